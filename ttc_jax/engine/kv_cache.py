"""KV cache with a shared prompt prefix: one stored copy of each prompt, N sample suffixes.

Layout, per layer:
  prefix_k/v  [B, P, K, D]     the prompt of each of B questions, stored once
  suffix_k/v  [B, N, S, K, D]  the tokens each of N samples appended after its prompt

A query of sample (b, n) attends to ``prefix[b]`` and ``suffix[b, n]`` separately; the two
softmax pieces are merged exactly by log-sum-exp (`ttc_jax.models.attention.merge_partials`).
Reading the prompt once per question instead of once per sample is what makes N = 256 samples
of a 1.5k-token prompt cheap.

Suffix slots are written in lock step: every `append` writes slot ``write_pos`` for all samples,
and a sample that has nothing to add (finished, or paused at a step boundary while others are
still writing) marks its slot invalid. Slots therefore may hold holes; RoPE positions count only
valid tokens (``prefix_len + suffix_len``), so holes are invisible to the model. This is what
lets search extend every sample by one reasoning step of its own length in a single loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ttc_jax.models.attention import (
    MASKED_LOGIT,
    causal_mask,
    combine_partials,
    dense_attention,
    merge_partials,
    partial_softmax,
)
from ttc_jax.models.transformer import Transformer

# Suffix slots read per step of the attention loop: reads stop at the last written chunk.
SUFFIX_CHUNK = 128


@struct.dataclass
class KVCache:
    prefix_k: tuple[jax.Array, ...]
    prefix_v: tuple[jax.Array, ...]
    prefix_valid: jax.Array  # [B, P] bool
    prefix_len: jax.Array  # [B] int32: real prompt tokens in the prefix
    suffix_k: tuple[jax.Array, ...]
    suffix_v: tuple[jax.Array, ...]
    suffix_valid: jax.Array  # [B, N, S] bool
    suffix_len: jax.Array  # [B, N] int32: valid suffix tokens so far
    write_pos: jax.Array  # [] int32: next suffix slot to write

    @property
    def num_samples(self) -> int:
        return self.suffix_valid.shape[1]

    @property
    def capacity(self) -> int:
        return self.suffix_valid.shape[2]

    def kv_bytes(self) -> dict[str, int]:
        """Bytes held by the prefix and the suffix parts of the cache."""

        def size(arrays):
            return sum(a.size * a.dtype.itemsize for a in arrays)

        return {
            "prefix": size(self.prefix_k + self.prefix_v),
            "suffix": size(self.suffix_k + self.suffix_v),
        }


def prefill(model: Transformer, tokens, valid, num_samples: int, capacity: int) -> KVCache:
    """Runs prompts [B, P] (left-padded; ``valid`` marks real tokens) into a fresh cache with
    an empty suffix of ``capacity`` slots for each of ``num_samples`` samples."""
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    mask = causal_mask(valid)
    keys, values = [], []

    def attend(_, q, k, v):
        keys.append(k)
        values.append(v)
        return dense_attention(q, k, v, mask)

    model.run_layers(tokens, positions, attend)
    b = tokens.shape[0]
    cfg = model.config
    dtype = keys[0].dtype if keys else jnp.float32
    empty = jnp.zeros((b, num_samples, capacity, cfg.num_kv_heads, cfg.head_dim), dtype)
    return KVCache(
        prefix_k=tuple(keys),
        prefix_v=tuple(values),
        prefix_valid=valid,
        prefix_len=jnp.sum(valid, axis=1).astype(jnp.int32),
        suffix_k=tuple(empty for _ in keys),
        suffix_v=tuple(empty for _ in keys),
        suffix_valid=jnp.zeros((b, num_samples, capacity), bool),
        suffix_len=jnp.zeros((b, num_samples), jnp.int32),
        write_pos=jnp.zeros((), jnp.int32),
    )


def append(model: Transformer, cache: KVCache, tokens, valid) -> tuple[jax.Array, KVCache]:
    """Appends tokens [B, N, T] (``valid`` [B, N, T]) to every sample's suffix.

    Returns the final hidden states [B, N, T, E] and the cache with slots
    ``write_pos .. write_pos + T - 1`` written. The caller keeps ``write_pos + T <= capacity``.
    """
    b, n, t = tokens.shape
    start = cache.write_pos
    offsets = jnp.cumsum(valid, axis=-1) - 1
    positions = cache.prefix_len[:, None, None] + cache.suffix_len[:, :, None] + offsets
    slots = jnp.arange(cache.capacity)
    suffix_valid = jax.lax.dynamic_update_slice(cache.suffix_valid, valid, (0, 0, start))
    # Query at slot start + i sees valid suffix slots up to and including its own.
    query_slots = start + jnp.arange(t)
    suffix_mask = suffix_valid[:, :, None, :] & (slots[None, :] <= query_slots[:, None])
    prefix_mask = cache.prefix_valid[:, None, None, None, None, :]
    new_k, new_v = list(cache.suffix_k), list(cache.suffix_v)

    def attend(layer, q, k, v):
        kv_heads, head_dim = k.shape[-2], k.shape[-1]
        k = k.reshape(b, n, t, kv_heads, head_dim)
        v = v.reshape(b, n, t, kv_heads, head_dim)
        new_k[layer] = jax.lax.dynamic_update_slice(new_k[layer], k, (0, 0, start, 0, 0))
        new_v[layer] = jax.lax.dynamic_update_slice(new_v[layer], v, (0, 0, start, 0, 0))
        grouped = q.reshape(b, n, t, kv_heads, -1, head_dim)
        parts = [
            _prefix_part(grouped, cache.prefix_k[layer], cache.prefix_v[layer], prefix_mask),
            _suffix_part(grouped, new_k[layer], new_v[layer], suffix_mask, start + t),
        ]
        out = merge_partials(parts)  # [B, N, K, G, T, D]
        out = out.transpose(0, 1, 4, 2, 3, 5).reshape(b * n, t, -1, head_dim)
        return out.astype(q.dtype)

    hidden = model.run_layers(
        tokens.reshape(b * n, t), positions.reshape(b * n, t).astype(jnp.int32), attend
    )
    cache = cache.replace(
        suffix_k=tuple(new_k),
        suffix_v=tuple(new_v),
        suffix_valid=suffix_valid,
        suffix_len=cache.suffix_len + jnp.sum(valid, axis=-1).astype(jnp.int32),
        write_pos=start + t,
    )
    return hidden.reshape(b, n, t, -1), cache


def _prefix_part(grouped, keys, values, mask):
    """Attention piece of queries [B, N, T, K, G, D] over the shared prefix [B, P, K, D]."""
    scale = grouped.shape[-1] ** -0.5
    logits = scale * jnp.einsum(
        "bntkgd,bpkd->bnkgtp", grouped, keys, preferred_element_type=jnp.float32
    )
    weights, peak, total = partial_softmax(logits, mask)
    attended = jnp.einsum(
        "bnkgtp,bpkd->bnkgtd",
        weights.astype(values.dtype),
        values,
        preferred_element_type=jnp.float32,
    )
    return attended, peak, total


def _suffix_part(grouped, keys, values, mask, end):
    """Attention piece over each sample's own suffix [B, N, S, K, D], mask [B, N, T, S].

    Only the chunks holding slots below ``end`` (those written so far) are read: early in a
    generation most of the preallocated suffix is empty, and reading it would double the KV
    traffic of a decode step on average.
    """
    b, n, t, kv_heads, group, head_dim = grouped.shape
    capacity = keys.shape[2]
    chunk = min(capacity, SUFFIX_CHUNK)
    if capacity % chunk:
        chunk = capacity
    scale = head_dim**-0.5

    def read_chunk(index, carry):
        first = index * chunk
        k = jax.lax.dynamic_slice_in_dim(keys, first, chunk, axis=2)
        v = jax.lax.dynamic_slice_in_dim(values, first, chunk, axis=2)
        m = jax.lax.dynamic_slice_in_dim(mask, first, chunk, axis=3)
        logits = scale * jnp.einsum(
            "bntkgd,bnckd->bnkgtc", grouped, k, preferred_element_type=jnp.float32
        )
        weights, peak, total = partial_softmax(logits, m[:, :, None, None])
        attended = jnp.einsum(
            "bnkgtc,bnckd->bnkgtd",
            weights.astype(v.dtype),
            v,
            preferred_element_type=jnp.float32,
        )
        return combine_partials(carry, (attended, peak, total))

    empty = (
        jnp.zeros((b, n, kv_heads, group, t, head_dim), jnp.float32),
        jnp.full((b, n, kv_heads, group, t, 1), MASKED_LOGIT, jnp.float32),
        jnp.zeros((b, n, kv_heads, group, t, 1), jnp.float32),
    )
    return jax.lax.fori_loop(0, (end + chunk - 1) // chunk, read_chunk, empty)


def gather_samples(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x [B, N, ...] -> [B, N', ...] with row (b, n') = x[b, indices[b, n']]."""
    return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), 1)


def reorder(cache: KVCache, indices: jax.Array) -> KVCache:
    """Suffixes gathered by ``indices`` [B, N'] (sample n' of question b takes the suffix of
    sample ``indices[b, n']``): beam selection and fan-out in one gather per array. N' may
    differ from N; the shared prefix is untouched."""
    return cache.replace(
        suffix_k=tuple(gather_samples(x, indices) for x in cache.suffix_k),
        suffix_v=tuple(gather_samples(x, indices) for x in cache.suffix_v),
        suffix_valid=gather_samples(cache.suffix_valid, indices),
        suffix_len=gather_samples(cache.suffix_len, indices),
    )
