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


# ttc_likelihood carries the steps' likelihood from call to call, through rollbacks too.
@pytest.fixture(scope="module", params=["ttc_value", "ttc_likelihood"])
def prm(request):
    kind = request.param
    return PRM.random(RANDOM_CONFIG, kind, prm_checkpoints.build_tokenizer(kind), seed=2)


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


def test_held_samples_add_nothing_and_later_continue_as_if_never_held(lm):
    engine, state = _start(lm)
    hold = np.zeros((2, 4), bool)
    hold[0, 1] = hold[1, 3] = True
    state, held = engine.extend(
        state, max_tokens=5, token_limit=64, sampling=SAMPLED, stop="\n", hold=hold
    )
    assert np.asarray(held.count)[hold].tolist() == [0, 0]
    assert (np.asarray(held.finish)[hold] == Finish.STOP).all()
    state, later = engine.extend(state, max_tokens=5, token_limit=64, sampling=SAMPLED, stop="\n")
    _, reference = _start(lm)
    _, free = engine.extend(reference, max_tokens=5, token_limit=64, sampling=SAMPLED, stop="\n")
    tokens, expected = engine.new_tokens(later, 2), engine.new_tokens(free, 2)
    assert tokens[0][1] == expected[0][1] and tokens[1][3] == expected[1][3]


def test_selecting_for_some_questions_moves_only_their_rows(lm):
    engine, state = _start(lm)
    state, _ = _step(engine, state)
    indices = np.array([[3, 3, 0, 1], [2, 2, 2, 2]])
    _, full = _start(lm)
    full, _ = _step(engine, full)
    full = engine.reorder(full, indices)
    before_keys = np.asarray(state.keys).copy()
    before_lengths = np.asarray(state.cache.suffix_len).copy()
    moved = engine.reorder(state, indices, moved=[0])
    np.testing.assert_array_equal(moved.keys[0], full.keys[0])
    np.testing.assert_array_equal(moved.cache.suffix_len[0], full.cache.suffix_len[0])
    np.testing.assert_array_equal(moved.cache.suffix_k[1][:4], full.cache.suffix_k[1][:4])
    np.testing.assert_array_equal(moved.keys[1], before_keys[1])  # question 1 untouched
    np.testing.assert_array_equal(moved.cache.suffix_len[1], before_lengths[1])
    _, a = _step(engine, moved)
    _, b = _step(engine, full)
    assert engine.new_tokens(a, 2)[0] == engine.new_tokens(b, 2)[0]


def test_rolling_back_some_questions_leaves_the_others(lm):
    engine, state = _start(lm)
    state, _ = _step(engine, state)
    saved = engine.checkpoint(state)
    state, _ = _step(engine, state, GREEDY)
    advanced = np.asarray(state.cache.suffix_len).copy()
    state = engine.rollback(state, saved, questions=[1])
    np.testing.assert_array_equal(state.cache.suffix_len[0], advanced[0])
    np.testing.assert_array_equal(state.cache.suffix_len[1], saved.suffix_len[1])


def test_prm_selection_and_rollback_for_some_questions(prm):
    state = prm.start(QUESTIONS, num_candidates=2)
    state, _ = prm.score_step(state, [["a", "b"], ["c", "d"]])
    saved = state.checkpoint()
    state, _ = prm.score_step(state, [["e", None], ["f", "g"]])
    state = prm.rollback(state, saved, questions=[0])
    np.testing.assert_array_equal(state.steps_done[:2], [[1, 1], [2, 2]])
    state = prm.reorder(state, [[1, 1], [0, 0]], moved=[1])
    np.testing.assert_array_equal(state.steps_done[:2], [[1, 1], [2, 2]])
    np.testing.assert_array_equal(state.lengths[1], [state.lengths[1, 0]] * 2)
    np.testing.assert_array_equal(np.asarray(state.cache.suffix_len)[:2], state.suffix_tokens[:2])


def test_a_call_returns_once_some_question_has_paused_everywhere(lm):
    engine, state = _start(lm)
    hold = np.zeros((2, 4), bool)
    hold[1] = True  # question 1 waits throughout: it does not end the call
    state, out = engine.extend(
        state, max_tokens=64, token_limit=64, sampling=SAMPLED, stop="\n", hold=hold,
        return_on_pause=True,
    )  # fmt: skip
    finish = np.asarray(out.finish)
    assert (finish[0] != Finish.RUNNING).all() and (np.asarray(out.count)[1] == 0).all()
    _, full = _start(lm)
    _, unhurried = engine.extend(full, max_tokens=64, token_limit=64, sampling=SAMPLED, stop="\n")
    # Without the early return the call runs until question 1 pauses too.
    assert int(out.steps) <= int(unhurried.steps)
    assert engine.new_tokens(out, 1) == engine.new_tokens(unhurried, 1)


def test_a_stop_string_completed_at_the_slot_limit_ends_the_sample(lm):
    # Greedy samples fill a suffix of 8 slots; a stop string equal to each prompt's whole
    # continuation then completes on the very last slot.
    engine, state = _start(lm, capacity=8)
    state, out = engine.extend(state, max_tokens=64, token_limit=64, sampling=GREEDY)
    assert (np.asarray(out.finish) == Finish.LENGTH).all()
    stops = [engine.text_of(samples[0]) for samples in engine.new_tokens(out, 2)]
    engine, state = _start(lm, capacity=8)
    state, out = engine.extend(state, max_tokens=64, token_limit=64, sampling=GREEDY, stop=stops)
    assert (np.asarray(out.finish) == Finish.STOP).all()
    # The next call decodes nothing, reports the sample ended and asks for no more room
    # (before, it asked to grow a suffix already at its limit, for ever).
    args, static = engine.extend_arguments(
        state, max_tokens=8, token_limit=64, sampling=GREEDY, stop=stops
    )
    state, out, more = engine._extend(*args, **static)
    assert not bool(more)
    assert (np.asarray(out.finish) == Finish.LENGTH).all() and not np.asarray(out.count).any()
