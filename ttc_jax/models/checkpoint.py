"""Strict conversion of transformers-layout tensors into this package's parameter tree.

`transformers_layout` says, for every parameter path, which checkpoint key fills it, the shape
that key must have, and how to rearrange it (torch's ``Linear`` stores [out, in]; we store
einsum layouts). `load_params` checks names and shapes of the whole checkpoint first - a
missing, unexpected or mis-shaped tensor fails before any weight is read - then reads each
tensor once and places it straight into its sharding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ttc_jax.errors import MissingTensorError, ShapeMismatchError, UnexpectedTensorError
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import ParamPath, Params, abstract_model, nest, resolve_dtype
from ttc_jax.sharding import ShardingRules

log = logging.getLogger(__name__)

# Non-persistent buffers some older checkpoints saved; they carry nothing we use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class TensorSource(Protocol):
    """A checkpoint's tensors under transformers' names, in transformers' layout."""

    name: str

    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    def read(self, key: str) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class CheckpointTensor:
    key: str
    shape: tuple[int, ...]
    to_param: Callable[[np.ndarray], np.ndarray]


def _transpose(w):
    return w.T


def _identity(w):
    return w


def transformers_layout(cfg: ModelConfig) -> dict[ParamPath, CheckpointTensor]:
    """Parameter path -> the transformers checkpoint tensor that fills it."""
    e, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    h, k, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    def into_heads(heads):  # [heads * d, e] -> [e, heads, d]
        return lambda w: w.T.reshape(e, heads, d)

    def bias_heads(heads):  # [heads * d] -> [heads, d]
        return lambda b: b.reshape(heads, d)

    layout = {
        ("embed",): CheckpointTensor("model.embed_tokens.weight", (v, e), _identity),
        ("final_norm", "scale"): CheckpointTensor("model.norm.weight", (e,), _identity),
    }
    if not cfg.tie_word_embeddings:
        layout[("lm_head",)] = CheckpointTensor("lm_head.weight", (v, e), _transpose)
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        entries = {
            ("input_norm", "scale"): (pre + "input_layernorm.weight", (e,), _identity),
            ("post_attn_norm", "scale"): (
                pre + "post_attention_layernorm.weight",
                (e,),
                _identity,
            ),
            ("attn", "q_proj"): (pre + "self_attn.q_proj.weight", (h * d, e), into_heads(h)),
            ("attn", "k_proj"): (pre + "self_attn.k_proj.weight", (k * d, e), into_heads(k)),
            ("attn", "v_proj"): (pre + "self_attn.v_proj.weight", (k * d, e), into_heads(k)),
            ("attn", "o_proj"): (
                pre + "self_attn.o_proj.weight",
                (e, h * d),
                lambda w: w.T.reshape(h, d, e),
            ),
            ("mlp", "gate_proj"): (pre + "mlp.gate_proj.weight", (f, e), _transpose),
            ("mlp", "up_proj"): (pre + "mlp.up_proj.weight", (f, e), _transpose),
            ("mlp", "down_proj"): (pre + "mlp.down_proj.weight", (e, f), _transpose),
        }
        if cfg.qkv_bias:
            entries[("attn", "q_bias")] = (pre + "self_attn.q_proj.bias", (h * d,), bias_heads(h))
            entries[("attn", "k_bias")] = (pre + "self_attn.k_proj.bias", (k * d,), bias_heads(k))
            entries[("attn", "v_bias")] = (pre + "self_attn.v_proj.bias", (k * d,), bias_heads(k))
        if cfg.o_bias:
            entries[("attn", "o_bias")] = (pre + "self_attn.o_proj.bias", (e,), _identity)
        if cfg.mlp_bias:
            entries[("mlp", "gate_bias")] = (pre + "mlp.gate_proj.bias", (f,), _identity)
            entries[("mlp", "up_bias")] = (pre + "mlp.up_proj.bias", (f,), _identity)
            entries[("mlp", "down_bias")] = (pre + "mlp.down_proj.bias", (e,), _identity)
        for path, (key, shape, to_param) in entries.items():
            layout[("layers", i, *path)] = CheckpointTensor(key, shape, to_param)
    return layout


def check_names_and_shapes(source: TensorSource, cfg: ModelConfig) -> None:
    """Raises if the checkpoint lacks, adds or mis-shapes any tensor the config implies."""
    available = source.shapes()
    expected = {t.key: t.shape for t in transformers_layout(cfg).values()}
    missing = sorted(expected.keys() - available.keys())
    if missing:
        raise MissingTensorError(
            f"{source.name} lacks {len(missing)} tensor(s) the model needs: {_some(missing)}"
        )
    ignorable = {key for key in available if key.endswith(IGNORED_SUFFIXES)}
    if cfg.tie_word_embeddings:
        # Tied checkpoints sometimes also save the (identical) head; transformers ignores it.
        ignorable.add("lm_head.weight")
    unexpected = sorted(available.keys() - expected.keys() - ignorable)
    if unexpected:
        raise UnexpectedTensorError(
            f"{source.name} has {len(unexpected)} tensor(s) the model has no place for: "
            f"{_some(unexpected)}"
        )
    check_shapes(source.name, available, expected)


def check_shapes(
    source_name: str,
    available: dict[str, tuple[int, ...]],
    expected: dict[str, tuple[int, ...]],
    what: str = "tensor",
) -> None:
    """Raises `ShapeMismatchError` for the first expected key whose shape differs."""
    for key, shape in expected.items():
        if tuple(available[key]) != shape:
            raise ShapeMismatchError(
                f"{source_name}: {what} {key!r} has shape {tuple(available[key])}, "
                f"but the config implies {shape}"
            )


def load_params(
    source: TensorSource, cfg: ModelConfig, dtype, mesh: Mesh, rules: ShardingRules
) -> Params:
    """Checks, reads and places every tensor; returns the sharded parameter tree."""
    dtype = resolve_dtype(dtype)
    check_names_and_shapes(source, cfg)
    _, specs = abstract_model(cfg, dtype)
    layout = transformers_layout(cfg)
    flat = {}
    for path, tensor in tqdm(layout.items(), desc="loading weights", disable=None, leave=False):
        spec = specs[path]
        value = np.asarray(tensor.to_param(source.read(tensor.key)), dtype=np.float32)
        assert value.shape == spec.shape, (path, value.shape, spec.shape)
        sharding = rules.sharding(mesh, spec.logical_axes, spec.shape)
        flat[path] = jax.device_put(value.astype(spec.dtype), sharding)
    log.info("loaded %d tensors from %s", len(flat), source.name)
    return nest(flat)


def _some(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
