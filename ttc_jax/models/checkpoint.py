"""Strict conversion of transformers-layout tensors into this package's parameter tree.

`transformers_layout` says, for every parameter path, which checkpoint keys fill it (one, or
several for a fused projection), the shape each key must have, and how to rearrange them
(torch's ``Linear`` stores [out, in]; we store einsum layouts). `load_params` checks names and
shapes of the whole checkpoint first - a missing, unexpected or mis-shaped tensor fails before
any weight is read - then reads each tensor once and places it straight into its sharding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ttc_jax.errors import MissingTensorError, ShapeMismatchError, UnexpectedTensorError
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import (
    ParamPath,
    Params,
    ParamSpec,
    abstract_model,
    nest,
    resolve_dtype,
)
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
    """The checkpoint tensors (keys and torch-layout shapes) that fill one parameter, and how:
    ``to_param`` takes one array per key, in order."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    to_param: Callable[..., np.ndarray]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self.keys, self.shapes, strict=True))

    def read(self, source: TensorSource) -> np.ndarray:
        return self.to_param(*(source.read(key) for key in self.keys))


def one_tensor(key: str, shape: tuple[int, ...], to_param=np.asarray) -> CheckpointTensor:
    """A parameter filled from a single checkpoint tensor."""
    return CheckpointTensor((key,), (shape,), to_param)


def _transpose(w):
    return w.T


def _stack(*arrays):
    return np.stack(arrays)


def transformers_layout(cfg: ModelConfig) -> dict[ParamPath, CheckpointTensor]:
    """Parameter path -> the transformers checkpoint tensor(s) that fill it."""
    e, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    h, k, d, group = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.q_per_kv

    def fuse_qkv(q, keys, values):  # [h * d, e], [k * d, e] x 2 -> [e, k, group + 2, d]
        parts = [q.T.reshape(e, k, group, d), keys.T.reshape(e, k, 1, d)]
        return np.concatenate([*parts, values.T.reshape(e, k, 1, d)], axis=2)

    def fuse_qkv_bias(q, keys, values):  # [h * d], [k * d] x 2 -> [k, group + 2, d]
        parts = [q.reshape(k, group, d), keys.reshape(k, 1, d), values.reshape(k, 1, d)]
        return np.concatenate(parts, axis=1)

    def fuse_gate_up(gate, up):  # [f, e] x 2 -> [e, 2, f]
        return np.stack([gate.T, up.T], axis=1)

    layout = {
        ("embed",): one_tensor("model.embed_tokens.weight", (v, e)),
        ("final_norm", "scale"): one_tensor("model.norm.weight", (e,)),
    }
    if not cfg.tie_word_embeddings:
        layout[("lm_head",)] = one_tensor("lm_head.weight", (v, e), _transpose)
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        attn, mlp = pre + "self_attn.", pre + "mlp."
        entries = {
            ("input_norm", "scale"): one_tensor(pre + "input_layernorm.weight", (e,)),
            ("attn", "qkv_proj"): CheckpointTensor(
                (attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"),
                ((h * d, e), (k * d, e), (k * d, e)),
                fuse_qkv,
            ),
            ("attn", "o_proj"): one_tensor(
                attn + "o_proj.weight", (e, h * d), lambda w: w.T.reshape(h, d, e)
            ),
            ("mlp", "gate_up_proj"): CheckpointTensor(
                (mlp + "gate_proj.weight", mlp + "up_proj.weight"), ((f, e), (f, e)), fuse_gate_up
            ),
            ("mlp", "down_proj"): one_tensor(mlp + "down_proj.weight", (e, f), _transpose),
        }
        if cfg.sandwich_norms:
            # Gemma: the norm before the MLP is pre_feedforward_layernorm, and its
            # post_attention_layernorm norms the attention output.
            entries[("post_attn_norm", "scale")] = one_tensor(
                pre + "pre_feedforward_layernorm.weight", (e,)
            )
            entries[("attn_out_norm", "scale")] = one_tensor(
                pre + "post_attention_layernorm.weight", (e,)
            )
            entries[("mlp_out_norm", "scale")] = one_tensor(
                pre + "post_feedforward_layernorm.weight", (e,)
            )
        else:
            entries[("post_attn_norm", "scale")] = one_tensor(
                pre + "post_attention_layernorm.weight", (e,)
            )
        if cfg.qk_norm:
            entries[("attn", "q_norm", "scale")] = one_tensor(attn + "q_norm.weight", (d,))
            entries[("attn", "k_norm", "scale")] = one_tensor(attn + "k_norm.weight", (d,))
        if cfg.qkv_bias:
            entries[("attn", "qkv_bias")] = CheckpointTensor(
                (attn + "q_proj.bias", attn + "k_proj.bias", attn + "v_proj.bias"),
                ((h * d,), (k * d,), (k * d,)),
                fuse_qkv_bias,
            )
        if cfg.o_bias:
            entries[("attn", "o_bias")] = one_tensor(attn + "o_proj.bias", (e,))
        if cfg.mlp_bias:
            entries[("mlp", "gate_up_bias")] = CheckpointTensor(
                (mlp + "gate_proj.bias", mlp + "up_proj.bias"), ((f,), (f,)), _stack
            )
            entries[("mlp", "down_bias")] = one_tensor(mlp + "down_proj.bias", (e,))
        for path, tensor in entries.items():
            layout[("layers", i, *path)] = tensor
    return layout


def check_names_and_shapes(source: TensorSource, cfg: ModelConfig) -> None:
    """Raises if the checkpoint lacks, adds or mis-shapes any tensor the config implies."""
    available = source.shapes()
    expected = expected_shapes(transformers_layout(cfg).values())
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


def expected_shapes(tensors: Iterable[CheckpointTensor]) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> the shape it must have, over all the given parameters."""
    return {key: shape for t in tensors for key, shape in t.expected_shapes().items()}


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
    params = read_and_place(source, transformers_layout(cfg), specs, mesh, rules)
    log.info("loaded %d parameters from %s", len(specs), source.name)
    return params


def read_and_place(
    source: TensorSource,
    layout: dict[ParamPath, CheckpointTensor],
    specs: dict[ParamPath, ParamSpec],
    mesh: Mesh,
    rules: ShardingRules,
) -> Params:
    """Reads each parameter's tensors and puts it straight into its sharding (nested tree)."""
    flat = {}
    for path, tensor in tqdm(layout.items(), desc="loading weights", disable=None, leave=False):
        spec = specs[path]
        value = np.asarray(tensor.read(source), dtype=np.float32)
        assert value.shape == spec.shape, (path, value.shape, spec.shape)
        sharding = rules.sharding(mesh, spec.logical_axes, spec.shape)
        flat[path] = jax.device_put(value.astype(spec.dtype, copy=False), sharding)
    return nest(flat)


def _some(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
