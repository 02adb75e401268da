"""Every strategy end to end on the real SmolLM2-135M-Instruct policy, with a small random
value-head PRM on its tokenizer, over MATH-500 problems."""

import math

import pytest

import ttc_jax
from tests import batch_invariance
from tests.batch_invariance import PRM_SHAPE
from ttc_jax.math import load_math500
from ttc_jax.search import run, strategy_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(smollm2_path):
    return ttc_jax.load_lm(smollm2_path)


@pytest.fixture(scope="module")
def prm(policy):
    return ttc_jax.PRM.random(PRM_SHAPE, "ttc_value", policy.tokenizer, seed=0)


@pytest.mark.parametrize(
    "name", ["majority", "best_of_n", "beam", "lookahead", "dvts", "revisions"]
)
def test_each_strategy_runs_on_smollm2(policy, prm, name):
    problems = load_math500()[:2]
    config = strategy_config(name)
    config.max_new_tokens = 24
    # The instruct model answers through its chat template; revisions need the plain prompt.
    config.prompt.style = "plain" if name == "revisions" else "chat"
    if name in ("beam", "lookahead", "dvts"):
        config.beam_width = 2
        config.max_rounds = 3
        config.max_step_tokens = 12
    if name == "revisions":
        config.sequential = 2
    results = run(config, policy, None if name == "majority" else prm, problems, budget=2, seed=0)
    assert [r.problem_id for r in results] == [p.id for p in problems]
    for result in results:
        assert result.strategy == name and result.budget == 2
        assert 1 <= len(result.candidates) <= 2
        assert all(c.text for c in result.candidates)
        accounting = result.accounting
        assert accounting.policy_prefill_tokens > 50 and accounting.policy_decode_tokens > 0
        assert accounting.policy_flops > 2 * 100e6 * accounting.policy_decode_tokens
        if name == "majority":
            assert accounting.verifier_tokens == 0
        else:
            assert accounting.verifier_tokens > 0
            assert all(not math.isnan(c.score) for c in result.candidates if c.step_scores)
        assert result.correct in (True, False)


INVARIANT_STRATEGIES = ("best_of_n", "beam", "dvts", "lookahead")


def test_a_question_gets_the_same_candidates_alone_or_beside_others():
    """Bitwise, on real weights, for best-of-N, beam search, DVTS (whose subtrees select at
    their own pace) and lookahead (whose greedy rollouts decode beside other questions'
    samples) with a PRM: beside a long prompt a short one's prefix is padded to
    1,024 slots instead of 64, and its 16 rows share 64 lanes with other questions' rows
    instead of 16. With XLA:CPU's defaults both changed how a sum was computed (YNNPACK or
    XLA's own code for the softmax, Eigen's threads for the products:
    `ttc_jax.xla_options`), and log-probabilities, scores and then tokens moved. Run on the
    default CPU client, in a process of its own (tests/batch_invariance.py)."""
    results = batch_invariance.measure(INVARIANT_STRATEGIES)
    assert list(results) == list(INVARIANT_STRATEGIES)
    for name, result in results.items():
        assert result["beside"] == result["alone"], name
        assert result["alone"][0] != result["alone"][1]  # the comparison tells questions apart
