"""`fit_linear_head`: logistic regression on soft labels, early-stopped on held-out rows."""

import numpy as np
import pytest

from ttc_jax.training.head_fit import HeadFitConfig, fit_linear_head

TRUE_WEIGHTS = np.array([0.8, -0.5, 0.0])
TRUE_BIAS = 0.3


def soft_labelled(num: int, seed: int):
    """Features far from standard (shifted, scaled) with soft labels of a known head."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num, 3)) * np.array([3.0, 0.5, 1.0]) + np.array([5.0, -2.0, 0.0])
    labels = 1 / (1 + np.exp(-(features @ TRUE_WEIGHTS + TRUE_BIAS)))
    return features.astype(np.float32), labels.astype(np.float32)


def test_recovers_the_head_that_made_the_labels_in_raw_feature_space():
    train, validation = soft_labelled(4000, 0), soft_labelled(1000, 1)
    fit = fit_linear_head(*train, *validation, HeadFitConfig(learning_rate=0.05, steps=3000))
    # Standardization is folded back: the weights apply to the raw features.
    np.testing.assert_allclose(fit.weights, TRUE_WEIGHTS, atol=0.03)
    assert fit.bias == pytest.approx(TRUE_BIAS, abs=0.1)
    features, labels = validation
    predicted = 1 / (1 + np.exp(-(features @ fit.weights + fit.bias)))
    np.testing.assert_allclose(predicted, labels, atol=0.02)
    assert fit.best_validation_loss < 0.7


def test_stops_when_the_held_out_loss_stops_improving():
    train, validation = soft_labelled(200, 0), soft_labelled(200, 1)
    settings = HeadFitConfig(learning_rate=0.5, steps=100_000, eval_every=10, patience=3)
    assert fit_linear_head(*train, *validation, settings).steps < 100_000


def test_the_penalty_spares_unpenalized_weights():
    train, validation = soft_labelled(2000, 0), soft_labelled(500, 1)
    settings = HeadFitConfig(learning_rate=0.05, steps=2000, weight_decay=10.0)
    fit = fit_linear_head(*train, *validation, settings, penalized=np.array([False, True, True]))
    # A huge penalty flattens the penalized weights; the spared one still carries the signal.
    assert abs(fit.weights[1]) < 0.01 and abs(fit.weights[2]) < 0.01
    assert fit.weights[0] > 0.5


def test_bad_shapes_and_settings_are_named():
    features, labels = soft_labelled(10, 0)
    with pytest.raises(ValueError, match=r"validation features \(10, 3\) and labels \(9,\)"):
        fit_linear_head(features, labels, features, labels[:9], HeadFitConfig())
    with pytest.raises(ValueError, match=r"unknown head-fit settings \['lr'\]"):
        HeadFitConfig.from_dict({"lr": 0.1})
