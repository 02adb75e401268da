"""Admission: new prompts take the rows of questions that ended while the others go on, and
an admitted question samples what it samples alone."""

from __future__ import annotations

import numpy as np
import pytest

from tests import engine_helpers
from ttc_jax.engine import Engine, SamplingConfig

SAMPLING = SamplingConfig(temperature=1.0)
PROMPTS = engine_helpers.prompts(21, [6, 9, 12, 7])
NEW = engine_helpers.prompts(22, [3, 15])  # shorter and longer than the first prompts
SAMPLES, SEED = 4, 5


def _extend(engine, state, tokens):
    state, out = engine.extend(state, max_tokens=tokens, token_limit=64, sampling=SAMPLING)
    return state, engine.new_tokens(out, len(PROMPTS)), np.asarray(out.logprob)


def _first_call(engine):
    state = engine.start(engine.layout(PROMPTS), SAMPLES, 64, seed=SEED)
    state, _, _ = _extend(engine, state, 6)
    ended = np.zeros((len(PROMPTS), SAMPLES), bool)
    ended[[1, 3]] = True  # questions 1 and 3 end here (as a search's finished questions do)
    return engine.freeze(state, ended)


def test_an_admitted_question_samples_what_it_samples_alone_and_the_others_go_on():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _first_call(engine)
    width = state.cache.prefix_valid.shape[1]
    state = engine.admit(state, [3, 1], engine.layout(NEW, width=width), SAMPLES, SEED)
    _, tokens, logprob = _extend(engine, state, 10)

    for new, slot in zip(NEW, [3, 1], strict=True):
        alone = Engine(lm)
        alone_state = alone.start(alone.layout([new]), SAMPLES, 64, seed=SEED)
        alone_state, out = alone.extend(
            alone_state, max_tokens=10, token_limit=64, sampling=SAMPLING
        )
        assert tokens[slot] == alone.new_tokens(out, 1)[0]
        np.testing.assert_allclose(logprob[slot], np.asarray(out.logprob)[0], rtol=1e-5)

    # Questions 0 and 2 continue as they do when nothing is admitted beside them.
    unchanged = Engine(lm)
    _, without, _ = _extend(unchanged, _first_call(unchanged), 10)
    assert [tokens[q] for q in (0, 2)] == [without[q] for q in (0, 2)]
    assert all(any(t) for q in (1, 3) for t in tokens[q])  # the admitted ones decoded


def test_admission_refuses_what_cannot_work_naming_it():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm)
    state = _first_call(engine)
    width = state.cache.prefix_valid.shape[1]
    batch = engine.layout(NEW[:1], width=width)
    cases = [
        (([0], batch, SAMPLES), r"questions \[0\] still have samples running"),
        (([1, 3], batch, SAMPLES), "1 prompts need as many question slots"),
        (([9], batch, SAMPLES), r"distinct questions in \[0, 4\)"),
        (([1], batch, 16), "16 samples a question do not fit a state of 4"),
        (([1], engine.layout(NEW[:1], width=2 * width), SAMPLES), f"width={width}"),
    ]
    for (slots, given, samples), message in cases:
        with pytest.raises(ValueError, match=message):
            engine.admit(state, slots, given, samples, SEED)
    with pytest.raises(ValueError, match="cannot hold the longest prompt"):
        engine.layout(NEW, width=4)


# -- the PRM's scoring state ------------------------------------------------------------------

QUESTIONS = ["What is 12 + 35?", "Janet's ducks lay 16 eggs per day; she eats 3. How many left?"]
ADMITTED = "What is 2 + 2?"
STEPS = [["Let x = 12.", "So x + 35 = 47."], ["16 - 3 = 13.", "She has 13 left."]]
ADMITTED_STEPS = ["2 + 2 = 4.", "The answer is 4."]


@pytest.fixture(scope="module")
def prm():
    from tests import prm_checkpoints
    from tests.test_prm import RANDOM_CONFIG
    from ttc_jax import PRM

    tokenizer = prm_checkpoints.build_tokenizer("qwen_math_prm")
    return PRM.random(RANDOM_CONFIG, "ttc_value", tokenizer, seed=1)


def _score(prm, state, steps_by_question):
    """One step for each of two candidates of every question; returns scores by question."""
    lists = [[[step], [step + " Then check."]] for step in steps_by_question]
    state, scores = prm.score_steps(state, lists)
    return state, [[c[0] for c in question] for question in scores]


def test_an_admitted_question_scores_as_it_scores_alone_and_the_others_go_on(prm):
    def first_round():
        state = prm.start(QUESTIONS, num_candidates=2)
        return _score(prm, state, [steps[0] for steps in STEPS])[0]

    state = prm.admit(first_round(), [0], [ADMITTED])
    state, pooled = _score(prm, state, [ADMITTED_STEPS[0], STEPS[1][1]])
    state, pooled_next = _score(prm, state, [ADMITTED_STEPS[1], STEPS[1][1]])

    alone = prm.start([ADMITTED], num_candidates=2)
    alone, first = _score(prm, alone, [ADMITTED_STEPS[0]])
    alone, second = _score(prm, alone, [ADMITTED_STEPS[1]])
    np.testing.assert_allclose([pooled[0], pooled_next[0]], [first[0], second[0]], rtol=1e-6)
    assert state.processed[0] == alone.processed[0]  # its count starts afresh

    _, unchanged = _score(prm, first_round(), [STEPS[0][1], STEPS[1][1]])
    np.testing.assert_allclose(pooled[1], unchanged[1], rtol=1e-6)


def test_the_prm_refuses_an_admission_that_cannot_work(prm):
    state = prm.start(QUESTIONS[:1], num_candidates=2)
    with pytest.raises(ValueError, match="does not fit the state's prefix"):
        prm.admit(state, [0], ["x " * 200])
    with pytest.raises(ValueError, match="distinct questions"):
        prm.admit(state, [3], [ADMITTED])
