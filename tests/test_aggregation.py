"""Step aggregation and answer selection: each rule picks what the paper's definition says."""

import math

import pytest

from ttc_jax.search import candidate_score, select
from ttc_jax.search.aggregation import answer_groups


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("mean", 1.6 / 3)]
)
def test_candidate_score_aggregates_step_scores(how, expected):
    assert candidate_score([0.9, 0.2, 0.5], how) == pytest.approx(expected)


def test_candidate_score_skips_unscored_steps_and_rejects_unknown_rules():
    assert candidate_score([0.4, math.nan], "last") == 0.4
    assert math.isnan(candidate_score([], "min"))
    with pytest.raises(ValueError, match="unknown step aggregation 'max'; choose one of: last"):
        candidate_score([0.5], "max")


def test_equivalent_answers_share_a_group_in_order_of_appearance():
    assert answer_groups(["7", "\\frac12", None, "0.5", "7.0", "x"]) == [0, 1, None, 1, 0, 2]


def test_weighted_picks_the_largest_score_sum_over_equivalent_answers():
    answers = ["3", "\\frac{1}{2}", "0.5", "3", "1/2"]
    scores = [0.9, 0.4, 0.35, 0.3, 0.3]
    # "3": 1.2; one half in three spellings: 1.05 -> "3" wins; raise one half's and it wins.
    assert select(answers, [True] * 5, scores, "weighted") == 0
    assert select(answers, [True] * 5, [0.9, 0.4, 0.35, 0.3, 0.5], "weighted") == 1
    # Best single score is "3" at 0.9; majority counts one half three times.
    assert select(answers, [True] * 5, scores, "best_of_n") == 0
    assert select(answers, [True] * 5, None, "majority") == 1


def test_unfinished_and_answerless_candidates_are_never_chosen():
    answers = ["5", None, "6", "6"]
    finished = [False, True, True, True]
    assert select(answers, finished, [1.0, 1.0, 0.1, 0.1], "best_of_n") == 2
    assert select(answers, finished, [1.0, 1.0, 0.1, 0.1], "weighted") == 2
    assert select(["5", "5", "6"], [False, False, True], None, "majority") == 2
    assert select(["5", None], [False, True], [1.0, 1.0], "weighted") is None


def test_ties_go_to_the_answer_that_came_first():
    assert select(["2", "1", "1", "2"], [True] * 4, None, "majority") == 0
    assert select(["2", "1"], [True, True], [0.5, 0.5], "best_of_n") == 0
    assert select(["2", "1"], [True, True], [math.nan, 0.0], "weighted") == 0


def test_selection_inputs_are_checked():
    with pytest.raises(ValueError, match="unknown answer selection 'vote'"):
        select(["1"], [True], None, "vote")
    with pytest.raises(ValueError, match="weighted selection needs candidate scores"):
        select(["1"], [True], None, "weighted")
    with pytest.raises(ValueError, match="one entry per candidate"):
        select(["1", "2"], [True], None, "majority")
