"""A plain pure-JAX decode loop: the baseline the engine must beat on a GPU.

What "plain" means here: the prompt is prefilled once and its keys/values are broadcast (copied)
to each of the N samples, in a cache laid out per layer as [N, kv_heads, slots, head_dim] and
preallocated for the whole generation. Decoding is one jitted ``lax.scan`` over the steps with
the cache donated; each step writes the current token's keys/values at its position, attends
over the *whole* preallocated cache with a ``slot <= position`` mask, computes float32 logits
and samples with ``jax.random.categorical`` (temperature 1, no top-p/top-k).

Why it is the reference: it is the straightforward way to write batched sampling in JAX, and
unlike transformers' ``generate`` it has no Python per step, no host syncs and no cache
reallocation. On a GPU it differs from the engine mainly in memory traffic: every step it reads
N copies of the prompt (and the unwritten tail of the cache), the engine one shared prompt.
Beating it measures what the engine's cache layout and loop buy, not what leaving PyTorch buys.
Calibration numbers from the issue, on one H100: at prompt 256, N=16 gave 11.3k tokens/s,
N=64 32.9k and N=256 66.6k; at prompt 1536, N=256 gave 30.1k.

The last prompt token is fed by the first scan step rather than by the prefill, so the loop
runs exactly ``new_tokens`` forward steps and the cache holds ``prompt_len - 1 + new_tokens``
slots (every slot gets written; the last sampled token is never fed).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ttc_jax.lm import LanguageModel
from ttc_jax.models.attention import MASKED_LOGIT, causal_mask, dense_attention
from ttc_jax.models.config import ModelConfig


class PlainCache(NamedTuple):
    """Per-layer keys and values, each [N, kv_heads, slots, head_dim]."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]

    def nbytes(self) -> int:
        return sum(a.size * a.dtype.itemsize for a in self.k + self.v)


def plain_loop_slots(prompt_len: int, new_tokens: int) -> int:
    """Cache slots per sample: the prompt but its last token, then every token fed."""
    return prompt_len - 1 + new_tokens


def plain_loop_kv_bytes(
    cfg: ModelConfig, dtype, num_samples: int, prompt_len: int, new_tokens: int
) -> int:
    """Bytes of the broadcast cache: keys and values of every layer, for every sample."""
    per_layer = num_samples * cfg.num_kv_heads * plain_loop_slots(prompt_len, new_tokens)
    return 2 * cfg.num_layers * per_layer * cfg.head_dim * jnp.dtype(dtype).itemsize


def plain_loop_prefill(
    lm: LanguageModel, prompt_ids: list[int], num_samples: int, new_tokens: int
) -> PlainCache:
    """The prompt (but its last token) run once, its keys/values copied into N samples' slots."""
    _check(lm, prompt_ids, num_samples, new_tokens)
    prefix = np.asarray([prompt_ids[:-1]], np.int32)
    capacity = plain_loop_slots(len(prompt_ids), new_tokens)
    with jax.set_mesh(lm.mesh):
        return _prefill_jit(lm.graphdef, lm.params, prefix, num_samples, capacity)


def plain_loop_decode(
    lm: LanguageModel,
    cache: PlainCache,
    last_prompt_token: int,
    prompt_len: int,
    new_tokens: int,
    seed: int,
    return_logprobs: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Runs the scan; ``cache`` is donated (do not reuse it).

    Returns tokens [N, new_tokens] int32 on device and, with ``return_logprobs``, the float32
    log-probability the loop's own logits gave each chosen token (for checks, not timing).
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    slots = plain_loop_slots(prompt_len, new_tokens)
    if cache.k[0].shape[2] != slots:
        # dynamic_update_slice clamps out-of-range writes instead of failing: a mismatched
        # cache would silently overwrite its last slot.
        raise ValueError(
            f"cache has {cache.k[0].shape[2]} slots; prompt_len={prompt_len} and "
            f"new_tokens={new_tokens} need {slots} (see plain_loop_prefill)"
        )
    with jax.set_mesh(lm.mesh):
        tokens, logprobs, _ = _decode_jit(
            lm.graphdef,
            lm.params,
            cache,
            jnp.int32(last_prompt_token),
            jnp.uint32(seed),
            prompt_len,
            new_tokens,
            return_logprobs,
        )
    return (tokens, logprobs) if return_logprobs else tokens


def plain_loop_sample(
    lm: LanguageModel,
    prompt_ids: list[int],
    num_samples: int,
    new_tokens: int,
    seed: int,
    return_logprobs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``num_samples`` continuations of ``prompt_ids``: tokens [num_samples, new_tokens] int32.

    With ``return_logprobs`` also the float32 log-probabilities of the chosen tokens, same shape.
    """
    cache = plain_loop_prefill(lm, prompt_ids, num_samples, new_tokens)
    out = plain_loop_decode(
        lm, cache, prompt_ids[-1], len(prompt_ids), new_tokens, seed, return_logprobs
    )
    if return_logprobs:
        return np.asarray(out[0]), np.asarray(out[1])
    return np.asarray(out)


def _check(lm: LanguageModel, prompt_ids, num_samples: int, new_tokens: int) -> None:
    if len(prompt_ids) < 1:
        raise ValueError("the prompt needs at least one token")
    if num_samples < 1 or new_tokens < 1:
        raise ValueError(
            f"need num_samples >= 1 and new_tokens >= 1, got {num_samples}, {new_tokens}"
        )
    if not all(0 <= t < lm.config.vocab_size for t in prompt_ids):
        raise ValueError(f"prompt token ids must lie in [0, {lm.config.vocab_size})")


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _prefill_jit(graphdef, params, prefix, num_samples: int, capacity: int) -> PlainCache:
    model = nnx.merge(graphdef, params)
    cfg = model.config
    batch, length = prefix.shape
    shape = (num_samples, cfg.num_kv_heads, capacity, cfg.head_dim)
    empty = jnp.zeros(shape, model.embed.dtype)
    if not length:  # a one-token prompt: the first scan step feeds it
        layers = tuple(empty for _ in range(cfg.num_layers))
        return PlainCache(layers, layers)
    mask = causal_mask(jnp.ones((batch, length), bool))

    def attend(_, __, q, k, v):
        return dense_attention(q, k, v, mask), (k, v)

    _, prompt_kv = model.run_layers(prefix, jnp.arange(length, dtype=jnp.int32)[None], attend)
    keys, values = [k for k, _ in prompt_kv], [v for _, v in prompt_kv]

    def broadcast(prompt_kv):
        # [1, P, K, D] -> [N, K, P, D]: one real copy per sample, which is what the baseline is.
        copies = jnp.broadcast_to(
            prompt_kv.transpose(0, 2, 1, 3), (num_samples, cfg.num_kv_heads, length, cfg.head_dim)
        )
        return jax.lax.dynamic_update_slice(empty, copies.astype(empty.dtype), (0, 0, 0, 0))

    return PlainCache(tuple(map(broadcast, keys)), tuple(map(broadcast, values)))


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7), donate_argnums=(2,))
def _decode_jit(
    graphdef, params, cache: PlainCache, last_token, seed, prompt_len, new_tokens, logprobs
):
    model = nnx.merge(graphdef, params)
    num_samples, _, capacity, _ = cache.k[0].shape
    slots = jnp.arange(capacity)
    root = jax.random.key(seed)
    start = prompt_len - 1

    def step(carry, i):
        cache, tokens = carry
        position = start + i
        visible = slots <= position

        def attend(_, layer_cache, q, k, v):
            # q [N, 1, H, D], k/v [N, 1, K, D]; the cache is [N, K, S, D].
            layer_k, layer_v = layer_cache
            layer_k = jax.lax.dynamic_update_slice(
                layer_k, k.transpose(0, 2, 1, 3), (0, 0, position, 0)
            )
            layer_v = jax.lax.dynamic_update_slice(
                layer_v, v.transpose(0, 2, 1, 3), (0, 0, position, 0)
            )
            n, _, heads, head_dim = q.shape
            kv_heads = k.shape[2]
            grouped = q.reshape(n, kv_heads, heads // kv_heads, head_dim)
            scores = jnp.einsum(
                "nkgd,nksd->nkgs", grouped, layer_k, preferred_element_type=jnp.float32
            )
            scores = jnp.where(visible, scores * head_dim**-0.5, MASKED_LOGIT)
            probs = jax.nn.softmax(scores, axis=-1).astype(layer_v.dtype)
            out = jnp.einsum("nkgs,nksd->nkgd", probs, layer_v)
            return out.reshape(n, 1, heads, head_dim).astype(q.dtype), (layer_k, layer_v)

        positions = jnp.full((num_samples, 1), position, jnp.int32)
        hidden, layer_caches = model.run_layers(
            tokens[:, None], positions, attend, zip(cache.k, cache.v, strict=True)
        )
        logits = model.logits(hidden)[:, 0]  # [N, V] float32
        chosen = jax.random.categorical(jax.random.fold_in(root, i), logits, axis=-1)
        chosen = chosen.astype(jnp.int32)
        out = chosen
        if logprobs:
            logp = jax.nn.log_softmax(logits, axis=-1)
            out = (chosen, jnp.take_along_axis(logp, chosen[:, None], axis=-1)[:, 0])
        cache = PlainCache(tuple(k for k, _ in layer_caches), tuple(v for _, v in layer_caches))
        return (cache, chosen), out

    first = jnp.full((num_samples,), last_token, jnp.int32)
    steps = jnp.arange(new_tokens, dtype=jnp.int32)
    # The final cache is returned (and dropped by the caller) so that XLA can alias it to the
    # donated input: with no output of its shape the donation is refused and the whole cache
    # is copied into the loop before the first step.
    (cache, _), out = jax.lax.scan(step, (cache, first), steps)
    if logprobs:
        tokens, logp = out
        return tokens.T, logp.T, cache
    return out.T, None, cache
