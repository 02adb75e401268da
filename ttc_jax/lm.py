"""`LanguageModel`: a loaded decoder (config, tokenizer, sharded parameters) and `load_lm`.

The parameters are an explicit pytree; jitted functions take them as an argument rather than
closing over them, so the same compiled program serves any weights of the same shapes and
nothing large is baked into an executable as a constant.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from ttc_jax.bucketing import bucket_count, bucket_length, round_up
from ttc_jax.models.checkpoint import load_params
from ttc_jax.models.checkpoint_kind import CheckpointKind, locate_checkpoint
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.gguf_source import GGUFSource
from ttc_jax.models.params import (
    Params,
    abstract_model,
    param_shardings,
    random_params,
    resolve_dtype,
)
from ttc_jax.models.safetensors_source import SafetensorsSource
from ttc_jax.models.text_decoder import text_decoder_source
from ttc_jax.models.tokenizer import folder_tokenizer, gguf_tokenizer
from ttc_jax.sharding import ShardingRules, make_mesh
from ttc_jax.xla_options import model_program_options


class LanguageModel:
    """A decoder-only LM placed on a mesh. Build one with `load_lm` or `LanguageModel.random`."""

    def __init__(
        self,
        config: ModelConfig,
        params: Params,
        mesh: Mesh,
        rules: ShardingRules,
        dtype,
        tokenizer: Any = None,
    ):
        self.config = config
        self.params = params
        self.mesh = mesh
        self.rules = rules
        self.dtype = resolve_dtype(dtype)
        self.tokenizer = tokenizer
        self.graphdef, self.param_specs = abstract_model(config, self.dtype)
        self.param_shardings = param_shardings(self.param_specs, mesh, rules)

    @classmethod
    def random(
        cls,
        config: ModelConfig,
        dtype="float32",
        mesh: Mesh | None = None,
        rules: ShardingRules | None = None,
        seed: int = 0,
        tokenizer: Any = None,
    ) -> LanguageModel:
        """Random weights of a given shape (tests, benchmarks, training from scratch)."""
        mesh = mesh or make_mesh(1, 1)
        rules = rules or ShardingRules()
        params = random_params(config, dtype, mesh, rules, seed)
        return cls(config, params, mesh, rules, dtype, tokenizer)

    @functools.cached_property
    def compiler_options(self) -> dict[str, str | bool] | None:
        """XLA options of every program that computes with these weights
        (`ttc_jax.xla_options`: a sample's numbers do not depend on the batch beside it)."""
        return model_program_options(self.mesh)

    def sharding(self, *logical_axes: str | None, shape=None) -> NamedSharding:
        """NamedSharding for an activation whose axes carry these logical names."""
        return self.rules.sharding(self.mesh, logical_axes, shape)

    @property
    def data_parallelism(self) -> int:
        axis = self.rules.mesh_axis("batch")
        return 1 if axis is None else self.mesh.shape[axis]

    def padded_batch_size(self, n: int) -> int:
        """Rows a batch of n is padded to: a `bucket_count`, split evenly over ``data``."""
        return round_up(bucket_count(n), self.data_parallelism)

    @functools.cached_property
    def _forward(self):
        tokens = self.sharding("batch", "seq")
        logits = self.sharding(
            "batch", "seq", "vocab", shape=(self.data_parallelism, 1, self.config.vocab_size)
        )
        return jax.jit(
            functools.partial(_forward_logits, self.graphdef),
            in_shardings=(self.param_shardings, tokens, tokens, tokens),
            out_shardings=logits,
            compiler_options=self.compiler_options,
        )

    def logits(self, token_ids, attention_mask=None) -> jax.Array:
        """Float32 logits [batch, time, vocab] of a full causal forward pass.

        ``token_ids`` is [batch, time] (array or nested lists of equal length). An optional
        ``attention_mask`` (1 = token, 0 = padding, either side) makes padding invisible:
        positions count real tokens only, so a left-padded row gives the same logits as the
        unpadded one. Inputs are padded to bucketed shapes and the result sliced back.
        """
        tokens = np.asarray(token_ids)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(
                f"token_ids must be a [batch, time] integer array, got shape {tokens.shape} "
                f"and dtype {tokens.dtype}"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}); "
                f"got min {tokens.min()}, max {tokens.max()}"
            )
        mask = np.ones_like(tokens, bool) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask has shape {mask.shape}, token_ids has shape {tokens.shape}"
            )
        mask = mask.astype(bool)
        batch, time = tokens.shape
        padded_batch = self.padded_batch_size(batch)
        padded_time = bucket_length(time)
        pad = ((0, padded_batch - batch), (0, padded_time - time))
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        inputs = (
            np.pad(tokens, pad).astype(np.int32),
            np.pad(positions, pad).astype(np.int32),
            np.pad(mask, pad),
        )
        with jax.set_mesh(self.mesh):
            out = self._forward(self.params, *map(self._on_mesh, inputs))
        return out[:batch, :time]

    def _on_mesh(self, rows: np.ndarray) -> jax.Array:
        """A [batch, time] host array, which every process holds whole, as one array split
        over the mesh's data axis: JAX takes host arrays only for meshes whose every device
        this process addresses, so on a mesh across processes each builds its own shards."""
        sharding = self.sharding("batch", "seq", shape=rows.shape)
        return jax.make_array_from_callback(rows.shape, sharding, lambda index: rows[index])


def _forward_logits(graphdef, params, tokens, positions, valid):
    model = nnx.merge(graphdef, params)
    return model.logits(model.hidden_states(tokens, positions, valid))


def load_lm(
    path: str | os.PathLike,
    dtype="float32",
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
) -> LanguageModel:
    """Loads a Hugging Face folder (safetensors, single or sharded) or a GGUF file.

    A folder is read as a Hugging Face folder and a file as GGUF, whatever their names (see
    `ttc_jax.models.checkpoint_kind`); ``~`` is expanded. The default mesh is the first device
    alone; pass `ttc_jax.make_mesh(data, model)` to split the model. Loading is strict: see
    `ttc_jax.models.checkpoint`.
    """
    path, kind = locate_checkpoint(path)
    dtype = resolve_dtype(dtype)
    mesh = mesh or make_mesh(1, 1)
    rules = rules or ShardingRules()
    if kind is CheckpointKind.GGUF:
        source = GGUFSource(path)
        config = source.config
        tokenizer = gguf_tokenizer(source.reader.fields) if source.has_tokenizer else None
    else:
        config = ModelConfig.from_hf_file(path / "config.json")
        source = text_decoder_source(SafetensorsSource(path))
        tokenizer = folder_tokenizer(path)
    params = load_params(source, config, dtype, mesh, rules)
    return LanguageModel(config, params, mesh, rules, dtype, tokenizer)
