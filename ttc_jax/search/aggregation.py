"""From PRM step scores to one candidate score, and from N candidates to one final answer.

Step aggregation (`candidate_score`): the PRM scores every step of a candidate; the paper
rates a candidate by its **last** step's score (better than min and prod in its ablation);
min, prod and mean are here for comparison.

Answer selection (`select`), over the candidates of one question:

* ``majority``: the final answer given most often;
* ``best_of_n``: the single candidate with the highest score ("naive" best-of-N);
* ``weighted``: best-of-N weighted, the paper's choice: the scores of all candidates that
  share a final answer are summed, and the answer with the largest sum wins.

Answers are grouped by mathematical equivalence (`ttc_jax.math.is_equiv`, after a cheap
canonical-string pass), not by string equality, so "\\frac12" and "0.5" vote together.
A candidate that never finished, or whose text holds no final answer, is never chosen. Ties
go to the answer whose first candidate comes first, so the choice is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ttc_jax.math.grading import is_equiv
from ttc_jax.math.normalize import normalize_answer

STEP_AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda scores: scores[-1],
    "min": min,
    "prod": math.prod,
    "mean": lambda scores: sum(scores) / len(scores),
}
SELECTIONS = ("majority", "best_of_n", "weighted")


def check_choice(value: str, choices, what: str) -> str:
    """``value`` if it is one of ``choices``; otherwise an error that lists them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def candidate_score(step_scores: Sequence[float], how: str = "last") -> float:
    """One score for a candidate from its step scores [0, 1]; NaN when it has none."""
    check_choice(how, STEP_AGGREGATIONS, "step aggregation")
    scores = [float(s) for s in step_scores if not math.isnan(float(s))]
    return STEP_AGGREGATIONS[how](scores) if scores else math.nan


def answer_groups(answers: Sequence[str | None]) -> list[int | None]:
    """Group id per answer (equivalent answers share one; None answers get None).

    Groups are numbered in order of first appearance. Equal canonical strings are merged
    without a symbolic check; distinct ones are compared with `is_equiv` against each
    group's first answer.
    """
    representatives: list[str] = []  # one answer per group
    by_canonical: dict[str, int] = {}
    groups: list[int | None] = []
    for answer in answers:
        if answer is None:
            groups.append(None)
            continue
        canonical = normalize_answer(answer)
        group = by_canonical.get(canonical)
        if group is None:
            group = next(
                (g for g, rep in enumerate(representatives) if is_equiv(answer, rep)), None
            )
            if group is None:
                group = len(representatives)
                representatives.append(answer)
            by_canonical[canonical] = group
        groups.append(group)
    return groups


def select(
    answers: Sequence[str | None],
    finished: Sequence[bool],
    scores: Sequence[float] | None = None,
    method: str = "weighted",
) -> int | None:
    """Index of the chosen candidate (the first candidate of the winning answer for
    ``majority`` and ``weighted``, the top-scored one for ``best_of_n``), or None when no
    candidate finished with an answer.

    ``scores`` (one per candidate; NaN counts as 0) are required except for ``majority``.
    """
    check_choice(method, SELECTIONS, "answer selection")
    if len(finished) != len(answers) or (scores is not None and len(scores) != len(answers)):
        raise ValueError("answers, finished and scores must have one entry per candidate")
    if scores is None and method != "majority":
        raise ValueError(f"{method} selection needs candidate scores")
    eligible = [a if done else None for a, done in zip(answers, finished, strict=True)]
    weights = [1.0] * len(answers) if method == "majority" else [_weight(s) for s in scores]
    if method == "best_of_n":
        ranked = [i for i, a in enumerate(eligible) if a is not None]
        return max(ranked, key=lambda i: (weights[i], -i), default=None)
    groups = answer_groups(eligible)
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    for index, group in enumerate(groups):
        if group is not None:
            totals[group] = totals.get(group, 0.0) + weights[index]
            first.setdefault(group, index)
    if not totals:
        return None
    best = max(totals, key=lambda g: (totals[g], -first[g]))
    return first[best]


def _weight(score: float) -> float:
    score = float(score)
    return 0.0 if math.isnan(score) else score
