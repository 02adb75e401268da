"""The step-wise primitives search stands on: samples at their own cache positions, undoable
extensions (checkpoint and rollback) for lookahead, fan-out without donation, many steps
scored in one PRM call, and one selection contract for the engine and the PRM."""

import warnings

import numpy as np
import pytest

from tests import engine_helpers, prm_checkpoints
from tests.test_prm import CANDIDATES, INCREMENTAL_TOLERANCE, QUESTIONS, RANDOM_CONFIG
from ttc_jax import PRM
from ttc_jax.engine import Finish, SamplingConfig, default_engine

SAMPLED = SamplingConfig(temperature=1.0)
GREEDY = SamplingConfig(temperature=0)


@pytest.fixture(scope="module")
def lm():
    return engine_helpers.tiny_lm(scale_logits=False)


@pytest.fixture(scope="module")
def prm():
    return PRM.random(RANDOM_CONFIG, "ttc_value", prm_checkpoints.build_tokenizer("ttc_value"))


def _start(lm, num_samples=4, capacity=64):
    engine = default_engine(lm)
    batch = engine.layout(engine_helpers.prompts(21, [5, 9]))
    return engine, engine.start(batch, num_samples, capacity, seed=3)


def _step(engine, state, sampling=SAMPLED):
    return engine.extend(state, max_tokens=16, token_limit=64, sampling=sampling, stop="\n")


def test_paused_samples_write_nothing_so_suffixes_hold_exactly_their_tokens(lm):
    engine, state = _start(lm)
    generated = np.zeros((2, 4), int)
    for _ in range(4):
        state, out = _step(engine, state)
        generated += np.asarray(out.count)
    lengths = np.asarray(state.cache.suffix_len)
    # The last prompt token plus every generated token except the pending one.
    np.testing.assert_array_equal(lengths, 1 + generated - 1 * ~np.asarray(state.finished))
    assert lengths.min() < lengths.max()  # steps of different lengths
    assert state.cache.capacity == 64  # one stage holds the longest suffix


def test_rollback_undoes_a_rollout_exactly(lm):
    engine, state = _start(lm)
    state, _ = _step(engine, state)
    saved = engine.checkpoint(state)
    for _ in range(3):  # a greedy lookahead, then forgotten
        state, _ = _step(engine, state, GREEDY)
    state = engine.rollback(state, saved)
    state, after = _step(engine, state)
    _, reference = _start(lm)
    reference, _ = _step(engine, reference)
    reference, expected = _step(engine, reference)
    assert engine.new_tokens(after, 2) == engine.new_tokens(expected, 2)
    np.testing.assert_allclose(after.logprob, expected.logprob, atol=1e-5)
    np.testing.assert_array_equal(state.cache.suffix_len, reference.cache.suffix_len)


def test_fan_out_copies_without_a_donation_warning_and_copies_diverge(lm):
    engine, state = _start(lm, num_samples=2)
    state, _ = _step(engine, state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = engine.reorder(state, [[0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    assert not [w for w in caught if "donated" in str(w.message)]
    assert state.pending.shape == (2, 6)
    state, out = _step(engine, state)
    steps = engine.new_tokens(out, 2)
    assert len({tuple(s) for s in steps[0][:3]}) > 1  # copies of one sample diverge


def test_engine_and_prm_take_selection_indices_the_same_way(lm, prm):
    engine, state = _start(lm, num_samples=2)
    prm_state = prm.start(QUESTIONS, num_candidates=2)
    for bad, message in (
        ([[0, 2], [0, 1]], r"indices must be integers in \[0, 2\)"),
        ([[0.5, 1], [0, 1]], r"indices must be integers in \[0, 2\)"),
        ([0, 1], r"indices must be \[questions \(at most 2\), samples\]"),
        ([[0]] * 3, r"indices must be \[questions \(at most 2\), samples\]"),
    ):
        with pytest.raises(ValueError, match=message):
            engine.reorder(state, bad)
        with pytest.raises(ValueError, match=message):
            prm.reorder(prm_state, bad)


def test_many_steps_in_one_prm_call_score_as_one_at_a_time(prm):
    candidates = CANDIDATES[0][:2]
    state = prm.start(QUESTIONS[:1], num_candidates=2)
    state, together = prm.score_steps(state, [[c[:2] for c in candidates]])
    one_by_one = prm.start(QUESTIONS[:1], num_candidates=2)
    for step in range(2):
        one_by_one, scores = prm.score_step(one_by_one, [[c[step] for c in candidates]])
        for c in range(2):
            assert together[0][c][step] == pytest.approx(scores[0, c], abs=INCREMENTAL_TOLERANCE)
    np.testing.assert_array_equal(state.lengths, one_by_one.lengths)
    np.testing.assert_array_equal(state.processed, one_by_one.processed)


def test_prm_rollback_forgets_steps_but_counts_their_tokens(prm):
    candidates = CANDIDATES[1][:2]
    state = prm.start(QUESTIONS[1:], num_candidates=2)
    state, _ = prm.score_step(state, [[c[0] for c in candidates]])
    saved, processed = state.checkpoint(), state.processed.copy()
    state, _ = prm.score_step(state, [["a detour", "another detour"]])
    state = prm.rollback(state, saved)
    assert state.processed[0] > processed[0]
    state, after = prm.score_step(state, [[candidates[0][1], None]])
    full = prm.score(QUESTIONS[1], [candidates[0][:2]])
    assert after[0, 0] == pytest.approx(full[0][1], abs=INCREMENTAL_TOLERANCE)
    assert np.isnan(after[0, 1])


def test_an_eos_ended_sample_stays_ended_through_reorder(lm):
    engine, state = _start(lm)
    for _ in range(30):
        state, out = _step(engine, state)
        if np.asarray(state.finished).any():
            break
    finish = np.asarray(out.finish)
    ended = np.argwhere(np.asarray(state.finished))
    assert len(ended)
    b, n = ended[0]
    indices = np.tile(np.arange(4), (2, 1))
    indices[b] = n
    state = engine.reorder(state, indices)
    assert np.asarray(state.finish)[b].tolist() == [finish[b, n]] * 4
    assert finish[b, n] in (Finish.EOS, Finish.LENGTH)
