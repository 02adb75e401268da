"""Next-token selection: greedy, temperature, top-k and top-p, with one PRNG key per sample.

Each sample (question b, sample n) owns a key; the key for its t-th token is
``fold_in(key, t)``. A sample's draws therefore depend only on its own key and history, not on
which other samples share the batch, how the batch is padded or how it is sharded.

A token is drawn by inverting the cumulative distribution with one uniform number per sample,
in two levels (blocks of `CDF_BLOCK` tokens, then a token within the chosen block). Gumbel-max
sampling, the usual alternative, needs a random number for every token of the vocabulary, per
sample and step: on two CPU cores that cost 12 ms of an 84 ms step at N=16, against 0.6 ms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf

# Tokens per block of the two-level inversion: the within-block cumulative sum stays short
# (exact in float32) and the block-level one has a few hundred entries at most.
CDF_BLOCK = 256


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
    """logits [R, V] float32, raw keys [R, 2] -> tokens [R] int32."""
    if cfg.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    uniforms = jax.vmap(lambda key: jax.random.uniform(key, (), jnp.float32))(keys)
    return invert_cdf(filter_logits(logits, cfg), uniforms)


def invert_cdf(logits: jnp.ndarray, uniforms: jnp.ndarray) -> jnp.ndarray:
    """The token of each row [R, V] of logits (-inf: never) whose cumulative softmax mass
    first exceeds ``uniforms`` [R] in [0, 1): a draw from softmax(logits) per row."""
    rows, vocab = logits.shape
    block = min(CDF_BLOCK, vocab)
    padded = -(-vocab // block) * block
    weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    weights = jnp.pad(weights, [(0, 0), (0, padded - vocab)]).reshape(rows, -1, block)
    block_mass = weights.sum(axis=-1)  # [R, blocks]
    cumulative = jnp.cumsum(block_mass, axis=-1)
    target = uniforms * cumulative[:, -1]
    chosen = _first_above(cumulative, target, block_mass)
    within = jnp.take_along_axis(weights, chosen[:, None, None], axis=1)[:, 0]  # [R, block]
    mass_before = _pick(cumulative, chosen) - _pick(block_mass, chosen)
    index = _first_above(mass_before[:, None] + jnp.cumsum(within, axis=-1), target, within)
    return (chosen * block + index).astype(jnp.int32)


def _first_above(cumulative, target, mass):
    """First index whose cumulative mass exceeds ``target``. Entries of zero mass repeat their
    predecessor's sum, so they are never first; if rounding leaves every sum at or below the
    target, the last entry with mass is taken (a zero-mass token can never be drawn)."""
    first = jnp.sum(cumulative <= target[:, None], axis=-1)
    positions = jnp.arange(mass.shape[-1])
    last_with_mass = jnp.max(jnp.where(mass > 0, positions, 0), axis=-1)
    return jnp.minimum(first, last_with_mass)


def _pick(x, index):
    return jnp.take_along_axis(x, index[:, None], axis=-1)[:, 0]


def sample_keys(seed: int, num_questions: int, num_samples: int) -> jnp.ndarray:
    """Raw keys [B, N, 2]: key of sample n of question b is fold_in(fold_in(seed, b), n)."""
    root = jax.random.PRNGKey(seed)

    def question_keys(b):
        question = jax.random.fold_in(root, b)
        return jax.vmap(lambda n: jax.random.fold_in(question, n))(jnp.arange(num_samples))

    return jax.vmap(question_keys)(jnp.arange(num_questions))
