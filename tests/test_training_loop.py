"""Packed batches, the resumable optax loop and the losses it trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ttc_jax
from ttc_jax.models.config import ModelConfig
from ttc_jax.training.loop import TrainConfig, fit
from ttc_jax.training.objectives import lm_loss, packed_hidden_states
from ttc_jax.training.packing import PADDING_SEGMENT, Example, lm_example, pack, pack_all

CONFIG = ModelConfig(
    vocab_size=32,
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    num_kv_heads=2,
    head_dim=8,
    intermediate_size=32,
    tie_word_embeddings=True,
)


def examples(count: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    return [
        lm_example(rng.integers(3, 32, rng.integers(2, 6)), rng.integers(3, 32, 4), eos_id=2)
        for _ in range(count)
    ]


def test_lm_example_trains_the_target_and_eos_only():
    example = lm_example([5, 6, 7], [8, 9], eos_id=2)
    np.testing.assert_array_equal(example.tokens, [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(example.targets, [6, 7, 8, 9, 2])
    np.testing.assert_array_equal(example.weights, [0, 0, 1, 1, 1])


def test_packing_fills_rows_in_order_and_stops_at_the_first_misfit():
    items = examples(20)
    batch, next_index = pack(items, 0, num_rows=2, row_length=16, target_dtype=np.int32)
    packed = sorted(set(batch.segments.ravel()) - {PADDING_SEGMENT})
    assert packed == list(range(1, next_index + 1))
    assert batch.num_tokens == sum(len(e) for e in items[:next_index])
    every = pack_all(items, 2, 16, np.int32)
    assert sum(b.num_tokens for b in every) == sum(len(e) for e in items)
    with pytest.raises(ValueError, match="longer than a row"):
        pack(items, 0, num_rows=1, row_length=3, target_dtype=np.int32)


def test_packed_examples_see_only_themselves():
    """Each packed example's hidden states equal a forward pass over it alone."""
    lm = ttc_jax.LanguageModel.random(CONFIG, seed=1)
    items = examples(6, seed=2)
    batch, count = pack(items, 0, num_rows=2, row_length=24, target_dtype=np.int32)
    model = nnx.merge(lm.graphdef, lm.params)
    hidden = np.asarray(packed_hidden_states(model, batch))
    for index in range(count):
        row, columns = np.nonzero(batch.segments == index + 1)
        tokens = items[index].tokens[None]
        positions = np.arange(tokens.shape[1])[None]
        alone = model.hidden_states(tokens, positions, np.ones_like(tokens, bool))
        np.testing.assert_allclose(hidden[row, columns], np.asarray(alone)[0], atol=1e-5)


def train_setup():
    lm = ttc_jax.LanguageModel.random(CONFIG, seed=0)
    batches = pack_all(examples(64, seed=3), 4, 24, np.int32)
    config = TrainConfig(steps=6, learning_rate=1e-2, warmup_steps=1, checkpoint_every=2)
    return lm, batches, config


def test_training_lowers_the_loss(tmp_path):
    lm, batches, config = train_setup()
    loss = jax.jit(lm_loss(lm.graphdef))
    before = float(np.divide(*loss(lm.params, batches[0])))
    result = fit("t", lm.params, lm_loss(lm.graphdef), lambda s: batches[0], config, tmp_path)
    assert result.steps == 6 and result.tokens == 6 * batches[0].num_tokens
    assert float(np.divide(*loss(result.params, batches[0]))) < before


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    lm, batches, config = train_setup()
    objective = lm_loss(lm.graphdef)
    clean = fit(
        "clean",
        jax.tree.map(jnp.copy, lm.params),
        objective,
        lambda s: batches[s % len(batches)],
        config,
        tmp_path / "clean",
    )

    def crash_at_step_5(step):
        if step == 5:
            raise KeyboardInterrupt
        return batches[step % len(batches)]

    with pytest.raises(KeyboardInterrupt):
        fit(
            "cut",
            jax.tree.map(jnp.copy, lm.params),
            objective,
            crash_at_step_5,
            config,
            tmp_path / "cut",
        )
    resumed = fit(
        "cut",
        jax.tree.map(jnp.copy, lm.params),
        objective,
        lambda s: batches[s % len(batches)],
        config,
        tmp_path / "cut",
    )
    assert resumed.steps == 6 and resumed.tokens == clean.tokens
    for a, b in zip(jax.tree.leaves(clean.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_early_stopping_keeps_the_best_parameters(tmp_path):
    lm, batches, _ = train_setup()
    # A learning rate this large makes validation loss worse after the first steps.
    config = TrainConfig(
        steps=40, learning_rate=3.0, warmup_steps=1, eval_every=1, patience=2, grad_clip=100.0
    )
    validation = batches[:1]
    result = fit(
        "es", lm.params, lm_loss(lm.graphdef), lambda s: batches[1], config, tmp_path, validation
    )
    assert result.steps < 40
    loss = jax.jit(lm_loss(lm.graphdef))
    best = float(np.divide(*loss(result.params, validation[0])))
    assert best == pytest.approx(result.best_validation_loss, rel=1e-5)
