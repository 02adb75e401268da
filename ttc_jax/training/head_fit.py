"""Fitting a linear score head on fixed features: logistic regression on soft labels.

A verifier whose backbone stays as it is (a ``ttc_likelihood`` PRM on a trained language
model) learns only its head: one weight per feature and a bias, fitted by binary
cross-entropy against soft labels with Adam on the whole training set at once (a few
thousand steps of a few hundred features take seconds), early-stopped on held-out
features. Features are standardized for the fit and the standardization folded back into
the weights, so the head applies to raw features.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ttc_jax.training.loop import settings_from_dict

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HeadFitConfig:
    """Settings of `fit_linear_head`."""

    learning_rate: float = 0.01
    steps: int = 3000
    # L2 penalty on the standardized weights of the penalized features (never the bias).
    weight_decay: float = 1e-4
    eval_every: int = 50
    # Stop after this many evaluations without a new best held-out loss (0: never).
    patience: int = 10

    @classmethod
    def from_dict(cls, values) -> HeadFitConfig:
        """From a mapping (an ml_collections ConfigDict, say) with these field names."""
        return settings_from_dict(cls, values, "head-fit settings")


@dataclasses.dataclass(frozen=True)
class HeadFit:
    """Weights [features] and bias for raw features; the fit's record."""

    weights: np.ndarray
    bias: float
    steps: int
    train_loss: float
    best_validation_loss: float


def fit_linear_head(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    validation_features: np.ndarray,
    validation_labels: np.ndarray,
    config: HeadFitConfig,
    penalized: np.ndarray | None = None,
) -> HeadFit:
    """sigmoid(features . weights + bias) fitted to labels in [0, 1] by cross-entropy; the
    weights of the best held-out loss. ``penalized`` [features] bool marks the weights the
    L2 penalty applies to (default: all)."""
    for name, features, labels in (
        ("training", train_features, train_labels),
        ("validation", validation_features, validation_labels),
    ):
        if features.ndim != 2 or len(features) != len(labels) or not len(labels):
            raise ValueError(
                f"{name} features {features.shape} and labels {labels.shape} must be "
                "[examples, features] and [examples], with at least one example"
            )
    mean = train_features.mean(axis=0)
    scale = train_features.std(axis=0) + 1e-6
    x_train = jnp.asarray((train_features - mean) / scale, jnp.float32)
    x_valid = jnp.asarray((validation_features - mean) / scale, jnp.float32)
    y_train = jnp.asarray(train_labels, jnp.float32)
    y_valid = jnp.asarray(validation_labels, jnp.float32)
    if penalized is None:
        penalized = np.ones(train_features.shape[1], bool)
    decay = jnp.asarray(np.asarray(penalized, np.float32) * config.weight_decay)

    def loss(params, x, y):
        logits = x @ params["w"] + params["b"]
        return optax.sigmoid_binary_cross_entropy(logits, y).mean()

    def objective(params):
        return loss(params, x_train, y_train) + (decay * params["w"] ** 2).sum()

    tx = optax.adam(config.learning_rate)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    held_out = jax.jit(lambda params: loss(params, x_valid, y_valid))
    params = {"w": jnp.zeros(x_train.shape[1], jnp.float32), "b": jnp.zeros((), jnp.float32)}
    opt_state = tx.init(params)
    best, best_params, best_step, since_best, done = np.inf, params, 0, 0, 0
    for done in range(1, config.steps + 1):
        params, opt_state = step(params, opt_state)
        if done % config.eval_every and done != config.steps:
            continue
        current = float(held_out(params))
        if current < best:
            best, best_params, best_step, since_best = current, params, done, 0
        else:
            since_best += 1
        log.debug("head fit: step %d held-out loss %.4f", done, current)
        if config.patience and since_best >= config.patience:
            break
    log.info("head fit: %d steps, best held-out loss %.4f at step %d", done, best, best_step)
    weights = np.asarray(best_params["w"], np.float64) / scale
    bias = float(best_params["b"]) - float((weights * mean).sum())
    return HeadFit(
        weights=weights.astype(np.float32),
        bias=bias,
        steps=done,
        train_loss=float(loss(best_params, x_train, y_train)),
        best_validation_loss=best,
    )
