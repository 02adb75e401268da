"""Losses over packed batches: next-token cross-entropy and a value head's cross-entropy.

Both run the project's `Transformer` through `run_layers` with a packed attention mask (each
token sees only earlier tokens of its own example) and return the summed loss with the summed
weight, so that `ttc_jax.training.loop.fit` can average over a batch or over many.

A value model's parameters are ``{"backbone": <Transformer params>, "head": <ValueHead
params>}``, the very trees `ttc_jax.load_prm` fills from a ``ttc_value`` checkpoint: the head
computes ``sigmoid(hidden . value_proj + value_bias)`` (`ttc_jax.prm.heads.ValueHead`), and
training reads the same two parameters before the sigmoid, where binary cross-entropy is
numerically stable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ttc_jax.models.attention import dense_attention
from ttc_jax.models.layers import INIT_STD
from ttc_jax.training.packing import Batch, packed_mask


def packed_hidden_states(model, batch: Batch) -> jax.Array:
    """Final-normed hidden states [B, L, E] of packed rows."""
    mask = packed_mask(batch.segments)
    hidden, _ = model.run_layers(
        batch.tokens, batch.positions, lambda _, __, q, k, v: (dense_attention(q, k, v, mask), None)
    )
    return hidden


def lm_loss(graphdef):
    """Next-token cross-entropy at the weighted positions of a batch of a `Transformer`."""

    def loss(params, batch: Batch):
        model = nnx.merge(graphdef, params)
        logits = model.logits(packed_hidden_states(model, batch))
        token_losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
        return (token_losses * batch.weights).sum(), batch.weights.sum()

    return loss


def value_logits(head_params, hidden: jax.Array) -> jax.Array:
    """The value head before its sigmoid: hidden [..., E] -> [...] float32."""
    projection = head_params["value_proj"].astype(jnp.float32)
    return hidden.astype(jnp.float32) @ projection + head_params["value_bias"].astype(jnp.float32)


def value_loss(graphdef):
    """Binary cross-entropy of the value head against soft labels at weighted positions."""

    def loss(params, batch: Batch):
        model = nnx.merge(graphdef, params["backbone"])
        logits = value_logits(params["head"], packed_hidden_states(model, batch))
        losses = optax.sigmoid_binary_cross_entropy(logits, batch.targets)
        return (losses * batch.weights).sum(), batch.weights.sum()

    return loss


def value_loss_with_references(graphdef, reference_weight: float):
    """Value cross-entropy on ``batch["examples"]`` plus ``reference_weight`` times the
    backbone's next-token cross-entropy on reference solutions (``batch["references"]``),
    each averaged over its own weighted positions.

    The language-model term keeps the backbone learning the task while the head learns to
    judge it: a verifier that knows the task better than the policy can check what the
    policy gets wrong.
    """
    value, language_model = value_loss(graphdef), lm_loss(graphdef)

    def loss(params, batch):
        value_sum, value_weight = value(params, batch["examples"])
        lm_sum, lm_weight = language_model(params["backbone"], batch["references"])
        mean = value_sum / jnp.maximum(value_weight, 1.0)
        mean += reference_weight * lm_sum / jnp.maximum(lm_weight, 1.0)
        return mean, jnp.ones((), jnp.float32)

    return loss


def new_value_head(hidden_size: int, seed: int) -> dict[str, jax.Array]:
    """A freshly initialised value head (as `ttc_jax.prm.heads.ValueHead` draws one)."""
    rng = np.random.default_rng(seed)
    projection = INIT_STD * rng.standard_normal(hidden_size, dtype=np.float32)
    return {"value_proj": jnp.asarray(projection), "value_bias": jnp.zeros((), jnp.float32)}
