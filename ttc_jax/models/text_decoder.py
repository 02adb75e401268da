"""The text decoder of a multimodal checkpoint (Gemma 3's ``gemma3``), as a tensor source.

A multimodal Gemma 3 folder holds its language model under ``model.language_model.*``
(transformers v5) or ``language_model.model.*`` (the published v4 layout), beside a vision tower
and a projector. `text_decoder_source` shows such a checkpoint to the strict loader as the
decoder alone, under the decoder's own names, and says what it skipped; a checkpoint without
those prefixes is returned as it is.
"""

from __future__ import annotations

import logging

import numpy as np

from ttc_jax.models.checkpoint import TensorSource

log = logging.getLogger(__name__)

# Where a multimodal checkpoint keeps its language model's "model.*" tensors.
LANGUAGE_MODEL_PREFIXES = ("model.language_model.", "language_model.model.")
# Its LM head, when saved (Gemma 3 ties it to the embeddings).
LANGUAGE_MODEL_HEADS = ("lm_head.weight", "language_model.lm_head.weight")


class TextDecoderSource:
    """A multimodal checkpoint seen as its language model (decoder keys only)."""

    def __init__(self, source: TensorSource, names: dict[str, str]):
        self.name = source.name
        self._source = source
        self._names = names  # decoder key -> the checkpoint's key

    def shapes(self) -> dict[str, tuple[int, ...]]:
        available = self._source.shapes()
        return {key: available[stored] for key, stored in self._names.items()}

    def read(self, key: str) -> np.ndarray:
        return self._source.read(self._names[key])


def text_decoder_source(source: TensorSource) -> TensorSource:
    """``source`` itself, or, for a multimodal checkpoint, a view of its text decoder only."""
    keys = list(source.shapes())
    if not any(key.startswith(LANGUAGE_MODEL_PREFIXES) for key in keys):
        return source
    names, skipped = {}, []
    for key in keys:
        prefix = next((p for p in LANGUAGE_MODEL_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            names["model." + key[len(prefix) :]] = key
        elif key in LANGUAGE_MODEL_HEADS:
            names["lm_head.weight"] = key
        else:
            skipped.append(key)
    log.warning(
        "%s is a multimodal checkpoint: reading its text decoder; the vision tower was skipped "
        "(%d tensors outside the language model, e.g. %s)",
        source.name,
        len(skipped),
        ", ".join(sorted(skipped)[:2]) or "none",
    )
    return TextDecoderSource(source, names)
