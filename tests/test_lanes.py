"""Lanes: a decode call computes only the rows that can advance, and a sample does not change
with the lanes it runs in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests import engine_helpers
from ttc_jax.engine import Engine, Finish, SamplingConfig
from ttc_jax.engine.engine import (
    ALL_ROWS,
    MIN_LANES,
    default_engine,
    default_min_lanes,
    lane_plan,
)

SAMPLING = SamplingConfig(temperature=1.0)


def _start(engine, num_prompts, samples, capacity=64, seed=0):
    prompts = engine_helpers.prompts(21, [6 + 2 * i for i in range(num_prompts)])
    return engine.start(engine.layout(prompts), samples, capacity, seed=seed)


def test_lane_plan_lists_the_live_rows_and_pads_to_a_power_of_two():
    live = np.zeros((4, 8), bool)
    live[1, [0, 3]] = live[3, 7] = True
    lanes, exit_below, settle_below = lane_plan(live, settle=True)
    assert np.asarray(lanes).tolist() == [8, 11, 31] + [32] * (MIN_LANES - 3)
    assert int(exit_below) == 0  # the fewest lanes cannot shrink
    assert int(settle_below) == MIN_LANES + 1  # so a settled question ends the call
    live[:] = True
    live[0, 0] = False
    lanes, exit_below, settle_below = lane_plan(live, settle=False)
    assert len(lanes) == 32 and int(np.asarray(lanes)[-1]) == 32  # 31 rows and one pad
    # It ends when fewer than half the lanes are live.
    assert int(exit_below) == 16 and int(settle_below) == 0
    live[:, 3:] = False
    assert len(lane_plan(live, settle=False)[0]) == 16  # 11 rows: 8, 16, 32, ...


def test_lanes_never_outnumber_the_rows():
    live = np.ones((3, 8), bool)  # 24 rows, where the next power of two is 32
    lanes, exit_below, _ = lane_plan(live, settle=False)
    assert np.asarray(lanes).tolist() == list(range(24)) and int(exit_below) == 12
    # Fewer rows than MIN_LANES are padded to it, even where every row is to be computed: a
    # product of fewer rows rounds differently.
    live = np.ones((1, 4), bool)
    for min_lanes in (MIN_LANES, ALL_ROWS):
        lanes, exit_below, settle_below = lane_plan(live, settle=True, min_lanes=min_lanes)
        assert np.asarray(lanes).tolist() == [0, 1, 2, 3] + [4] * (MIN_LANES - 4)
        assert int(exit_below) == 0 and int(settle_below) == MIN_LANES + 1


def test_min_lanes_at_the_rows_computes_every_row_in_every_call():
    live = np.zeros((4, 8), bool)
    live[1, 0] = True
    lanes, exit_below, settle_below = lane_plan(live, settle=True, min_lanes=1024)
    assert np.asarray(lanes).tolist() == [8] + [32] * 31
    assert int(exit_below) == 0 and int(settle_below) == 33
    with pytest.raises(ValueError, match="min_lanes must be >= 1"):
        Engine(engine_helpers.tiny_lm(), min_lanes=0)


def test_the_default_engine_gathers_lanes_for_models_worth_it_only():
    tiny = engine_helpers.tiny_lm()
    assert default_engine(tiny).min_lanes == ALL_ROWS
    larger = dataclasses.replace(tiny.config, hidden_size=256, intermediate_size=1024)
    assert default_min_lanes(larger) == MIN_LANES


def test_a_sample_is_the_same_in_every_row_or_in_lanes():
    """An engine that computes every row in every call samples what one that gathers the live
    rows into lanes does, with one lane count per call and a lane-step for every row."""
    lm = engine_helpers.tiny_lm(eos_token_ids=(5, 13, 21, 29, 37, 45, 53, 61))

    def run(min_lanes):
        engine = Engine(lm, min_lanes=min_lanes)
        state = _start(engine, 4, 8, seed=8)
        state, out = engine.extend(state, max_tokens=40, token_limit=40, sampling=SAMPLING)
        return engine.new_tokens(out, 4), np.asarray(out.logprob), out

    lane_tokens, lane_logprob, lanes = run(MIN_LANES)
    row_tokens, row_logprob, rows = run(4 * 8)
    assert lane_tokens == row_tokens
    np.testing.assert_array_equal(lane_logprob, row_logprob)
    assert int(rows.lane_steps) == 4 * 8 * int(rows.steps) and int(rows.calls) == 1
    assert int(lanes.lane_steps) < int(rows.lane_steps)


def test_held_questions_cost_no_lanes_and_stay_as_they_were():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _start(engine, 4, 8)
    hold = np.ones((4, 8), bool)
    hold[2] = False  # one question of four decodes
    state, out = engine.extend(
        state, max_tokens=6, token_limit=64, sampling=SAMPLING, stop="\n", hold=hold
    )
    steps, lane_steps = int(out.steps), int(out.lane_steps)
    # 8 lanes a step, not the 32 rows of the batch.
    assert lane_steps == MIN_LANES * steps and steps > 0
    count = np.asarray(out.count)
    assert count[2].sum() > 0 and not count[hold].any()
    assert (np.asarray(state.cache.suffix_len)[hold] == 0).all()
    assert (np.asarray(out.finish)[hold] == Finish.STOP).all()


def test_ended_rows_leave_the_lanes():
    """Samples that end early stop costing lanes: the rows still live are gathered into fewer
    lanes, so rows computed x steps fall well below every row at every step."""
    # Every newline id ends a sample: most end within 40 tokens, at different steps.
    lm = engine_helpers.tiny_lm(eos_token_ids=(5, 13, 21, 29, 37, 45, 53, 61))
    engine = Engine(lm)
    state = _start(engine, 4, 8)
    state, out = engine.extend(state, max_tokens=40, token_limit=40, sampling=SAMPLING)
    count = np.asarray(out.count)
    rows = count.size
    assert int(out.lane_steps) < rows * int(out.steps)
    # Every lane-step is a token, save padding and the lanes of rows that ended mid-call.
    assert int(out.lane_steps) >= count.sum()
    assert int(out.calls) > 1  # gathered again as rows ended


@pytest.mark.parametrize("held", [0, 1, 3])
def test_a_sample_is_the_same_whatever_else_decodes(held):
    """A question's samples are the same tokens whether the other questions decode beside it
    (many lanes) or are held (few lanes)."""
    lm = engine_helpers.tiny_lm()

    def run(hold_others):
        engine = Engine(lm)
        state = _start(engine, 4, 8, seed=5)
        hold = np.zeros((4, 8), bool)
        hold[[q for q in range(4) if q != held]] = hold_others
        state, out = engine.extend(
            state, max_tokens=12, token_limit=64, sampling=SAMPLING, hold=hold
        )
        return engine.new_tokens(out, 4)[held], np.asarray(out.logprob)[held]

    alone_tokens, alone_logprob = run(True)
    together_tokens, together_logprob = run(False)
    assert alone_tokens == together_tokens
    np.testing.assert_allclose(alone_logprob, together_logprob, rtol=1e-5)


def test_a_call_returns_once_a_group_of_samples_has_settled():
    """With ``settle_group`` a search's subtree (here 2 of a question's 8 samples) ends the
    call as soon as its samples are all paused, while the question's others still decode."""
    lm = engine_helpers.tiny_lm()

    def settled_after(group):
        engine = Engine(lm)
        state = _start(engine, 1, 8, seed=3)
        state, out = engine.extend(
            state,
            max_tokens=64,
            token_limit=64,
            sampling=SAMPLING,
            stop="\n",
            return_on_pause=True,
            settle_group=group,
        )
        paused = np.asarray(out.finish)[0] != Finish.RUNNING
        return int(out.steps), paused.reshape(-1, 2).all(axis=1)

    steps_by_group, groups_paused = settled_after(2)
    steps_by_question, _ = settled_after(None)
    assert groups_paused.any() and not groups_paused.all()
    assert steps_by_group < steps_by_question


def test_a_reorder_of_some_samples_leaves_the_others_as_they_are():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _start(engine, 2, 4, seed=4)
    state, _ = engine.extend(state, max_tokens=5, token_limit=64, sampling=SAMPLING)
    before = {k: np.asarray(v) for k, v in state.sample_fields().items()}
    moved = np.zeros((2, 4), bool)
    moved[1, 2:] = True  # the second subtree of the second question
    indices = np.tile([0, 1, 3, 3], (2, 1))
    state = engine.reorder(state, indices, moved)
    after = {k: np.asarray(v) for k, v in state.sample_fields().items()}
    for name, value in after.items():
        np.testing.assert_array_equal(value[~moved], before[name][~moved], err_msg=name)
    np.testing.assert_array_equal(after["num_generated"][1, 2:], before["num_generated"][1, 3])
    # Both copies of sample 3 get fresh keys of their own, so they diverge.
    assert not np.array_equal(after["keys"][1, 2], after["keys"][1, 3])
    assert not np.array_equal(after["keys"][1, 3], before["keys"][1, 3])


def test_bad_settle_groups_and_moved_masks_are_named():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _start(engine, 1, 8)
    with pytest.raises(ValueError, match="settle_group must divide the state's 8 samples"):
        engine.extend(state, max_tokens=4, token_limit=64, sampling=SAMPLING, settle_group=3)
    with pytest.raises(ValueError, match="settle_group must be an integer >= 1"):
        engine.extend(state, max_tokens=4, token_limit=64, sampling=SAMPLING, settle_group=0)
    with pytest.raises(ValueError, match=r"a mask of moved samples must be \[questions"):
        engine.reorder(state, np.zeros((1, 8), int), np.ones((1, 4), bool))


def test_a_row_pauses_once_it_has_added_its_budget():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _start(engine, 2, 4, seed=6)
    budget = np.tile([1, 2, 3, 64], (2, 1))
    state, out = engine.extend(
        state, max_tokens=20, token_limit=64, sampling=SAMPLING, budget=budget
    )
    count, finish = np.asarray(out.count), np.asarray(out.finish)
    np.testing.assert_array_equal(count[:, :3], budget[:, :3])
    assert (finish[:, :3] == Finish.STOP).all()
    assert (count[:, 3] == 20).all()  # no cap but the call's


def test_greedy_rows_take_the_most_likely_token_beside_rows_that_sample():
    lm = engine_helpers.tiny_lm()

    def tokens(sampling, greedy=None):
        engine = Engine(lm)
        state = _start(engine, 2, 4, seed=7)
        state, out = engine.extend(
            state, max_tokens=10, token_limit=64, sampling=sampling, greedy=greedy
        )
        return np.asarray(out.tokens)

    greedy = np.zeros((2, 4), bool)
    greedy[1, 1:3] = True
    mixed = tokens(SAMPLING, greedy)
    np.testing.assert_array_equal(mixed[greedy], tokens(SamplingConfig(temperature=0))[greedy])
    np.testing.assert_array_equal(mixed[~greedy], tokens(SAMPLING)[~greedy])


def test_bad_budgets_are_named():
    engine = Engine(engine_helpers.tiny_lm())
    state = _start(engine, 1, 4)
    for budget in (np.zeros((1, 4), int), np.ones((1, 3), int), np.full((1, 4), 1.5)):
        with pytest.raises(ValueError, match=r"budget must be \[questions"):
            engine.extend(state, max_tokens=4, token_limit=64, sampling=SAMPLING, budget=budget)
