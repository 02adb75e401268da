"""Score heads of process reward models: hidden state at a scored token -> probability.

Every PRM here is a decoder backbone (`ttc_jax.models.Transformer`, without an LM head) plus
one of four small heads, each a Flax NNX module whose parameters carry ``logical_axes``
metadata like the backbone's (`ttc_jax.models.layers`):

* `LabelTokenHead`: token-logit PRMs (Math-Shepherd, RLHFlow) score a step by the LM's
  preference for a "good" over a "bad" label token. Only the two unembedding rows of those
  tokens matter, so they are all we keep: softmax over two logits, P(good).
* `ClassifierHead`: Qwen2.5-Math-PRM's ``score`` MLP (Linear-ReLU-Linear to two classes),
  P(class 1).
* `ValueHead`: one linear unit and a sigmoid (Skywork's ``v_head.summary``, this project's
  ``value_head``).
* `LikelihoodValueHead`: a value head that also weighs the backbone's own log-likelihood of
  the solution so far (this project's ``ttc_likelihood`` PRMs): a verifier that knows the task
  better than the policy can tell a slip by how unlikely it finds it.

Heads compute in float32 whatever the weights' dtype: they see only the handful of scored
positions, and scores of different candidates are compared with each other, so the precision
is cheap and worth having.
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
from flax import nnx

from ttc_jax.models.layers import random_param, zeros_param
from ttc_jax.models.params import ParamPath, ParamSpec, abstract_module


class Readout(enum.Enum):
    """Which head turns a PRM's hidden state into a step score."""

    LABEL_TOKENS = "label_tokens"
    CLASSIFIER = "classifier"
    VALUE = "value"
    VALUE_LIKELIHOOD = "value_likelihood"


def _f32(param: nnx.Param) -> jnp.ndarray:
    return param[...].astype(jnp.float32)


class LabelTokenHead(nnx.Module):
    """P(good label) from the logits of the good and bad label tokens."""

    def __init__(self, hidden_size: int, dtype, rngs: nnx.Rngs):
        # Column 0: the good label's unembedding row, column 1: the bad label's.
        self.label_unembed = random_param(rngs, (hidden_size, 2), ("embed", None), dtype)

    def __call__(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """hidden [..., E] -> [...] float32."""
        logits = jnp.einsum("...e,el->...l", hidden.astype(jnp.float32), _f32(self.label_unembed))
        return jax.nn.softmax(logits, axis=-1)[..., 0]


class ClassifierHead(nnx.Module):
    """P(class 1) of a two-class Linear-ReLU-Linear classifier."""

    def __init__(self, hidden_size: int, dtype, rngs: nnx.Rngs):
        self.dense = random_param(rngs, (hidden_size, hidden_size), ("embed", "mlp"), dtype)
        self.dense_bias = zeros_param((hidden_size,), ("mlp",), dtype)
        self.out = random_param(rngs, (hidden_size, 2), ("mlp", None), dtype)
        self.out_bias = zeros_param((2,), (None,), dtype)

    def __call__(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """hidden [..., E] -> [...] float32."""
        inner = jnp.einsum("...e,ef->...f", hidden.astype(jnp.float32), _f32(self.dense))
        inner = jax.nn.relu(inner + _f32(self.dense_bias))
        logits = jnp.einsum("...f,fl->...l", inner, _f32(self.out)) + _f32(self.out_bias)
        return jax.nn.softmax(logits, axis=-1)[..., 1]


class ValueHead(nnx.Module):
    """sigmoid(w . hidden + b)."""

    def __init__(self, hidden_size: int, dtype, rngs: nnx.Rngs):
        self.value_proj = random_param(rngs, (hidden_size,), ("embed",), dtype)
        self.value_bias = zeros_param((), (), dtype)

    def __call__(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """hidden [..., E] -> [...] float32."""
        value = jnp.einsum("...e,e->...", hidden.astype(jnp.float32), _f32(self.value_proj))
        return jax.nn.sigmoid(value + _f32(self.value_bias))


class LikelihoodValueHead(nnx.Module):
    """sigmoid(w . hidden + b + a * log-likelihood), where the log-likelihood is the
    backbone's, as a language model, of the solution's tokens so far (see
    `ttc_jax.prm.scorer`)."""

    def __init__(self, hidden_size: int, dtype, rngs: nnx.Rngs):
        self.value_proj = random_param(rngs, (hidden_size,), ("embed",), dtype)
        self.value_bias = zeros_param((), (), dtype)
        self.likelihood_weight = random_param(rngs, (), (), dtype)

    def __call__(self, hidden: jnp.ndarray, likelihood: jnp.ndarray) -> jnp.ndarray:
        """hidden [..., E], likelihood [...] -> [...] float32."""
        value = jnp.einsum("...e,e->...", hidden.astype(jnp.float32), _f32(self.value_proj))
        value += likelihood.astype(jnp.float32) * _f32(self.likelihood_weight)
        return jax.nn.sigmoid(value + _f32(self.value_bias))


HEADS = {
    Readout.LABEL_TOKENS: LabelTokenHead,
    Readout.CLASSIFIER: ClassifierHead,
    Readout.VALUE: ValueHead,
    Readout.VALUE_LIKELIHOOD: LikelihoodValueHead,
}


@dataclasses.dataclass(frozen=True)
class AbstractHead:
    """A head's graph definition and, per parameter path, its shape, dtype and axes."""

    graphdef: nnx.GraphDef
    specs: dict[ParamPath, ParamSpec]


def abstract_head(readout: Readout, hidden_size: int, dtype) -> AbstractHead:
    """Shapes and axes of a head, known before any weight is read (nothing is allocated)."""
    head_cls = HEADS[readout]
    return AbstractHead(*abstract_module(lambda: head_cls(hidden_size, dtype, rngs=nnx.Rngs(0))))
