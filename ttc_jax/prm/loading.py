"""`load_prm`: strict loading of a PRM checkpoint as a head-less decoder plus its score head.

A PRM checkpoint holds a decoder under transformers' names (``model.*``), maybe an LM head, and
its family's head tensors (``score.0.*`` and ``score.2.*``, ``v_head.summary.*``,
``value_head.*``). The decoder is checked and loaded by `ttc_jax.models.checkpoint` from a view
of the checkpoint without the head tensors; the head tensors are checked here against the
head's abstract tree. Every check runs before any weight is read, and a missing, unexpected or
mis-shaped tensor anywhere raises `MissingTensorError`, `UnexpectedTensorError` or
`ShapeMismatchError`.

Token-logit PRMs need only the LM head's rows of their two label tokens; those two rows become
the `LabelTokenHead` and the full [vocab, hidden] head is never placed on a device.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from jax.sharding import Mesh

from ttc_jax.errors import CheckpointError, MissingTensorError, UnexpectedTensorError
from ttc_jax.lm import LanguageModel
from ttc_jax.models.checkpoint import (
    CheckpointTensor,
    TensorSource,
    check_shapes,
    expected_shapes,
    load_params,
    one_tensor,
    read_and_place,
)
from ttc_jax.models.checkpoint_kind import CheckpointKind, locate_checkpoint
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import ParamPath, Params, resolve_dtype
from ttc_jax.models.safetensors_source import SafetensorsSource
from ttc_jax.models.tokenizer import folder_tokenizer
from ttc_jax.prm.heads import AbstractHead, Readout, abstract_head
from ttc_jax.prm.kinds import PRMFormat, build_format, format_class
from ttc_jax.prm.scorer import PRM, headless
from ttc_jax.sharding import ShardingRules, make_mesh

log = logging.getLogger(__name__)

LM_HEAD_KEY = "lm_head.weight"
EMBED_KEY = "model.embed_tokens.weight"


class _WithoutKeys:
    """A tensor source seen without some of its keys (the head's, for the decoder's check)."""

    def __init__(self, source: TensorSource, hidden: set[str]):
        self.name = source.name
        self._source = source
        self._hidden = hidden

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: s for k, s in self._source.shapes().items() if k not in self._hidden}

    def read(self, key: str) -> np.ndarray:
        return self._source.read(key)


def head_layout(fmt: PRMFormat, cfg: ModelConfig) -> dict[ParamPath, CheckpointTensor]:
    """Head parameter path -> the checkpoint tensor (torch layout) that fills it."""
    e, v = cfg.hidden_size, cfg.vocab_size
    if fmt.readout is Readout.LABEL_TOKENS:
        good, bad = fmt.label_ids()
        for name, token in (("good", good), ("bad", bad)):
            if not 0 <= token < v:
                raise ValueError(f"the {name} label token id {token} is outside [0, {v})")
        key = EMBED_KEY if cfg.tie_word_embeddings else LM_HEAD_KEY
        rows = one_tensor(key, (v, e), lambda w: np.stack([w[good], w[bad]], axis=1))
        return {("label_unembed",): rows}
    k = fmt.head_key
    if fmt.readout is Readout.CLASSIFIER:
        return {
            ("dense",): one_tensor(f"{k}.0.weight", (e, e), np.transpose),
            ("dense_bias",): one_tensor(f"{k}.0.bias", (e,)),
            ("out",): one_tensor(f"{k}.2.weight", (2, e), np.transpose),
            ("out_bias",): one_tensor(f"{k}.2.bias", (2,)),
        }
    layout = {
        ("value_proj",): one_tensor(f"{k}.weight", (1, e), lambda w: w[0]),
        ("value_bias",): one_tensor(f"{k}.bias", (1,), lambda b: b[0]),
    }
    if fmt.readout is Readout.VALUE_LIKELIHOOD:
        if not cfg.tie_word_embeddings:
            raise CheckpointError(
                f"a {fmt.kind} PRM reads its backbone's likelihood through the token "
                "embeddings, so its config must tie them (tie_word_embeddings: true)"
            )
        layout[("likelihood_weight",)] = one_tensor(f"{k}.likelihood_weight", (1,), lambda w: w[0])
    return layout


def decoder_view(
    source: TensorSource, fmt: PRMFormat, cfg: ModelConfig, layout: dict[ParamPath, Any]
) -> _WithoutKeys:
    """Checks the head's tensors; returns the source as the decoder's loader must see it."""
    available = source.shapes()
    decoder_keys = {EMBED_KEY} | {key for key in available if key.startswith("model.")}
    head_only = {
        key: shape
        for key, shape in expected_shapes(layout.values()).items()
        if key not in decoder_keys
    }
    missing = sorted(head_only.keys() - available.keys())
    if missing:
        raise MissingTensorError(
            f"{source.name} lacks the {fmt.kind} head tensor(s) {', '.join(map(repr, missing))}"
        )
    check_shapes(source.name, available, head_only, what="head tensor")
    ignored = {key for key in fmt.ignored_keys if key in available}
    # `headless` makes the decoder's own check forgive an LM head; a PRM that has no use for
    # one must not have it.
    unused = LM_HEAD_KEY not in head_only.keys() | ignored
    if LM_HEAD_KEY in available and unused and not cfg.tie_word_embeddings:
        raise UnexpectedTensorError(
            f"{source.name} has {LM_HEAD_KEY!r}, which a {fmt.kind} PRM has no place for"
        )
    return _WithoutKeys(source, set(head_only) | ignored)


def load_head(
    source: TensorSource,
    layout: dict[ParamPath, CheckpointTensor],
    abstract: AbstractHead,
    mesh: Mesh,
    rules: ShardingRules,
) -> Params:
    """Reads the head's tensors and places each into its sharding."""
    return read_and_place(source, layout, abstract.specs, mesh, rules)


def load_prm(
    path: str | os.PathLike,
    kind: str,
    dtype="float32",
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
    **format_options: Any,
) -> PRM:
    """Loads the PRM of family ``kind`` from a Hugging Face folder (safetensors + tokenizer).

    Kinds: ``math_shepherd``, ``rlhflow``, ``qwen_math_prm``, ``skywork``, ``ttc_value``,
    ``ttc_likelihood`` (see `ttc_jax.prm.kinds`). ``format_options`` change a format's
    strings, e.g. ``step_tag="<step>"`` for a Math-Shepherd-style PRM with another tag. The
    default mesh is the first device alone; ``~`` is expanded; loading is strict (see the
    module docstring).
    """
    format_class(kind)  # an unknown kind fails before any file is read
    path, checkpoint_kind = locate_checkpoint(path)
    if checkpoint_kind is CheckpointKind.GGUF:
        raise CheckpointError(
            f"{path} is a GGUF file; PRMs load from a Hugging Face folder (config.json, "
            "safetensors weights and tokenizer files), not from GGUF"
        )
    dtype = resolve_dtype(dtype)
    mesh = mesh or make_mesh(1, 1)
    rules = rules or ShardingRules()
    config = ModelConfig.from_hf_file(path / "config.json")
    tokenizer = folder_tokenizer(path)
    fmt = build_format(kind, tokenizer, **format_options)
    source = SafetensorsSource(path)
    layout = head_layout(fmt, config)
    decoder_source = decoder_view(source, fmt, config, layout)
    backbone_config = headless(config)
    params = load_params(decoder_source, backbone_config, dtype, mesh, rules)
    abstract = abstract_head(fmt.readout, config.hidden_size, dtype)
    head_params = load_head(source, layout, abstract, mesh, rules)
    log.info("loaded a %s PRM from %s", kind, path)
    backbone = LanguageModel(backbone_config, params, mesh, rules, dtype, tokenizer)
    return PRM(backbone, fmt, abstract.graphdef, head_params)
