"""Attention kernels over grouped-query projections.

Queries come as [B, T, H, D] and keys/values as [B, S, K, D] with H = K * G. Queries are viewed
as [B, T, K, G, D] so that each key/value head is read once for its G query heads, instead of
being repeated G times in memory.

Besides dense attention this module holds the pieces of *split* attention: attention over two
key sets (a shared prompt prefix and a per-sample suffix) computed separately and merged exactly
by log-sum-exp, so that N samples can read one stored copy of their prompt's keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# A finite "minus infinity": a row whose keys are all masked (a padding query, or an empty
# prefix) contributes exp(-1e30 - max) = 0 instead of NaNs.
MASKED_LOGIT = -1e30


def attention_logits(q: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """q [B, T, H, D], k [B, S, K, D] -> scaled logits [B, K, G, T, S] in float32."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    grouped = q.reshape(b, t, kv_heads, h // kv_heads, d)
    logits = jnp.einsum("btkgd,bskd->bkgts", grouped, k, preferred_element_type=jnp.float32)
    return logits * (d**-0.5)


def attend_values(probs: jnp.ndarray, v: jnp.ndarray, dtype) -> jnp.ndarray:
    """probs [B, K, G, T, S], v [B, S, K, D] -> [B, T, H, D]."""
    out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
    b, t, k, g, d = out.shape
    return out.reshape(b, t, k * g, d).astype(dtype)


def dense_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, mask: jnp.ndarray):
    """Softmax attention with a boolean mask [B, T, S] (True = may attend)."""
    logits = attention_logits(q, k)
    logits = jnp.where(mask[:, None, None, :, :], logits, MASKED_LOGIT)
    return attend_values(jax.nn.softmax(logits, axis=-1), v, q.dtype)


def causal_mask(key_valid: jnp.ndarray) -> jnp.ndarray:
    """[B, S] validity -> [B, S, S] mask: query t sees valid keys at positions <= t."""
    s = key_valid.shape[-1]
    causal = jnp.tril(jnp.ones((s, s), dtype=bool))
    return causal[None] & key_valid[:, None, :]


def window_mask(query_positions: jnp.ndarray, key_positions: jnp.ndarray, window: int):
    """[B, T] and [B, S] positions -> [B, T, S]: the key is fewer than ``window`` positions
    before the query (transformers' ``kv_idx > q_idx - sliding_window``). Combine with a
    causal mask: keys after the query pass this test."""
    return key_positions[:, None, :] > query_positions[:, :, None] - window


def partial_softmax(logits: jnp.ndarray, mask: jnp.ndarray):
    """Unnormalised softmax pieces over the last axis: (exp(logits - max), max, sum)."""
    logits = jnp.where(mask, logits, MASKED_LOGIT)
    peak = jnp.max(logits, axis=-1, keepdims=True)
    weights = jnp.exp(logits - peak)
    return weights, peak, jnp.sum(weights, axis=-1, keepdims=True)


def combine_partials(first, second):
    """Two unnormalised pieces (attended, max, sum) over disjoint keys -> one such piece."""
    attended_a, peak_a, total_a = first
    attended_b, peak_b, total_b = second
    peak = jnp.maximum(peak_a, peak_b)
    scale_a, scale_b = jnp.exp(peak_a - peak), jnp.exp(peak_b - peak)
    return (
        attended_a * scale_a + attended_b * scale_b,
        peak,
        total_a * scale_a + total_b * scale_b,
    )


def merge_partials(parts):
    """Normalised attention from [(attended_unnormalised, max, sum), ...] of disjoint key sets."""
    merged = parts[0]
    for part in parts[1:]:
        merged = combine_partials(merged, part)
    attended, _, total = merged
    return attended / total
