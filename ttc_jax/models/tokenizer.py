"""The transformers tokenizer of a checkpoint: a Hugging Face folder's files or a GGUF's metadata.

A GGUF file's tokenizer is built from the metadata `GGUFSource` has already parsed, by
transformers' own GGUF tokenizer conversion (what ``AutoTokenizer.from_pretrained(folder,
gguf_file=...)`` runs), so it behaves like transformers' tokenizer while the file is parsed
once: transformers' loader would parse the metadata twice more, once for a model config it then
only uses to pick the tokenizer class, and needs torch to do it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttc_jax.errors import CheckpointError

if TYPE_CHECKING:
    from gguf import ReaderField
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

# Special tokens the tokenizer takes as strings, and the metadata keys of their ids.
_SPECIAL_TOKEN_IDS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def folder_tokenizer(path: Path) -> Any:
    """The tokenizer of a Hugging Face folder, or None when the folder ships none."""
    from transformers import AutoTokenizer

    has_tokenizer_json = (path / "tokenizer.json").exists()
    if not has_tokenizer_json and not (path / "tokenizer_config.json").exists():
        log.info("%s has no tokenizer files; no tokenizer", path)
        return None
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (ValueError, ImportError, OSError) as error:
        if has_tokenizer_json:
            raise
        # Without tokenizer.json, transformers converts a slow tokenizer's files (a GPT-2
        # vocab.json and merges.txt do) and, failing, asks for sentencepiece or tiktoken,
        # which hides that the folder lacks the file a fast tokenizer is read from.
        raise CheckpointError(
            f"{path} has tokenizer_config.json but no tokenizer.json, and its tokenizer "
            "cannot be built without it; add the model's tokenizer.json to the folder"
        ) from error


def gguf_tokenizer(fields: Mapping[str, ReaderField]) -> PreTrainedTokenizerFast:
    """The tokenizer and chat template described by a GGUF file's metadata fields."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    metadata = {
        key: field.contents() for key, field in fields.items() if key.startswith("tokenizer.")
    }
    # transformers' table of metadata keys -> the converter's and the tokenizer's arguments.
    sections = {
        section: {
            name: metadata[f"tokenizer.{key}"]
            for key, name in renames.items()
            if f"tokenizer.{key}" in metadata
        }
        for section, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    vocabulary, tokenizer_config = sections["tokenizer"], sections["tokenizer_config"]
    if vocabulary.get("tokenizer_type") == "llama":
        # llama.cpp adds BOS for a SentencePiece vocabulary whose file does not say otherwise.
        tokenizer_config.setdefault("add_bos_token", True)
    for name, key in _SPECIAL_TOKEN_IDS.items():
        # Stated even when absent (None): left out, the tokenizer would invent "<s>" and "</s>".
        token_id = metadata.get(key)
        tokenizer_config[name] = None if token_id is None else vocabulary["tokens"][token_id]
    architecture = fields["general.architecture"].contents()
    backend, extra_config = convert_gguf_tokenizer(architecture, vocabulary)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config, **extra_config)
