"""Next-token selection: greedy, temperature, top-k and top-p, with one PRNG key per sample.

Each sample (question b, sample n) owns a key; the key for its t-th token is
``fold_in(key, t)``. A sample's draws therefore depend only on its own key and history, not on
which other samples share the batch, how the batch is padded or how it is sharded.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to pick the next token. ``temperature == 0`` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def filter_logits(logits: jnp.ndarray, cfg: SamplingConfig) -> jnp.ndarray:
    """Temperature, then top-k, then top-p (transformers' order); removed tokens get -inf.

    logits [R, V] float32. Top-p keeps the smallest set of most likely tokens whose mass
    reaches ``top_p`` (the most likely token always stays).
    """
    scaled = logits / cfg.temperature
    if cfg.top_k:
        kth_largest = jax.lax.top_k(scaled, cfg.top_k)[0][..., -1:]
        scaled = jnp.where(scaled < kth_largest, NEG_INF, scaled)
    if cfg.top_p < 1:
        ordered = jnp.sort(scaled, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.where(mass_before < cfg.top_p, ordered, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        scaled = jnp.where(scaled < threshold, NEG_INF, scaled)
    return scaled


def sample_tokens(logits: jnp.ndarray, keys: jnp.ndarray, cfg: SamplingConfig) -> jnp.ndarray:
    """logits [R, V] float32, raw keys [R, 2] -> tokens [R] int32 (Gumbel-max sampling)."""
    if cfg.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, cfg)
    noise = jax.vmap(lambda key: jax.random.gumbel(key, logits.shape[-1:]))(keys)
    return jnp.argmax(filtered + noise, axis=-1).astype(jnp.int32)


def sample_keys(seed: int, num_questions: int, num_samples: int) -> jnp.ndarray:
    """Raw keys [B, N, 2]: key of sample n of question b is fold_in(fold_in(seed, b), n)."""
    root = jax.random.PRNGKey(seed)

    def question_keys(b):
        question = jax.random.fold_in(root, b)
        return jax.vmap(lambda n: jax.random.fold_in(question, n))(jnp.arange(num_samples))

    return jax.vmap(question_keys)(jnp.arange(num_questions))
