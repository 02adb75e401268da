"""Memory-bandwidth roofline of batched decoding: measured copy bandwidth and bytes per step.

One decode step of N samples must read every weight once and every key/value the samples
attend to once; at small N nothing else is large, so ``N / (bytes per step / bandwidth)`` is
the fastest any implementation could produce tokens. Which key/values count depends on the
cache layout: a cache that stores the prompt once (ours) reads it once per step, a cache that
repeats the prompt for each sample (transformers' ``generate``) reads it N times.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp

from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import abstract_model

# Large enough to leave every cache level on this machine and on the GPUs behind.
DEFAULT_COPY_BYTES = 1 << 30


def copy_bandwidth(num_bytes: int = DEFAULT_COPY_BYTES, repeats: int = 10) -> float:
    """Bytes read plus bytes written per second by a jitted elementwise pass over an array.

    The buffer is donated, so the pass updates it in place: a fresh output each call would
    time the operating system's first touch of new pages (on this CPU 5 GB/s instead of 45),
    not the memory. The best of ``repeats`` calls is taken.
    """
    x = jnp.zeros((num_bytes // 4,), jnp.float32)
    bump = jax.jit(lambda a: a + 1.0, donate_argnums=0)
    x = bump(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x = bump(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * x.nbytes / best


def weight_bytes_per_step(cfg: ModelConfig, dtype) -> int:
    """Bytes of weights one decode step reads: all of them, except an untied input
    embedding, of which a step gathers only a handful of rows."""
    _, specs = abstract_model(cfg, dtype)
    total = 0
    for path, spec in specs.items():
        if path == ("embed",) and not cfg.tie_word_embeddings:
            continue
        total += spec.dtype.itemsize * math.prod(spec.shape)
    return total


def kv_bytes_per_token(cfg: ModelConfig, dtype) -> int:
    """Key plus value bytes of one token across all layers."""
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * jnp.dtype(dtype).itemsize


def kv_bytes_read_per_step(
    cfg: ModelConfig, dtype, samples: int, prompt_len: int, new_tokens: int, shared_prompt: bool
) -> float:
    """Key/value bytes one decode step reads, averaged over the ``new_tokens`` steps.

    At step s each sample attends to the prompt and to its own s earlier tokens, (T - 1) / 2
    on average. ``shared_prompt``: the prompt is stored (and read) once for all samples.
    """
    own_tokens = samples * (new_tokens - 1) / 2
    prompt_tokens = prompt_len * (1 if shared_prompt else samples)
    return kv_bytes_per_token(cfg, dtype) * (prompt_tokens + own_tokens)


def roofline_tokens_per_s(
    cfg: ModelConfig,
    dtype,
    samples: int,
    prompt_len: int,
    new_tokens: int,
    bandwidth: float,
    shared_prompt: bool,
) -> float:
    """Tokens per second if each decode step took exactly its bytes at ``bandwidth``."""
    step_bytes = weight_bytes_per_step(cfg, dtype) + kv_bytes_read_per_step(
        cfg, dtype, samples, prompt_len, new_tokens, shared_prompt
    )
    return samples * bandwidth / step_bytes
