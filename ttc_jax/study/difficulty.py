"""Question difficulty: oracle (pass@1 from K samples) and predicted (the PRM's mean final
score over the same samples, no answer key needed), each cut into quantile bins.

Bin 1 is the easiest fifth (the highest pass@1, or the highest predicted score). Questions are
ranked by value, ties broken by question id, and cut into bins of equal size (the first bins
take one more when the count does not divide), so bins do not depend on the order questions
come in and are as balanced as the counts allow.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from ttc_jax.math.grading import is_equiv
from ttc_jax.search.results import Candidate


def pass_rate(candidates: Sequence[Candidate], gold: str) -> float:
    """The share of candidates whose answer is right (an unfinished one counts as wrong)."""
    return _mean([float(c.finished and is_equiv(c.answer, gold)) for c in candidates])


def mean_final_score(scores: Sequence[float]) -> float:
    """The mean of the candidates' final-step scores (NaN for none: unscored counts as 0)."""
    values = [0.0 if math.isnan(s) else s for s in scores]
    return _mean(values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def quantile_bins(values: Mapping[str, float], num_bins: int = 5) -> dict[str, int]:
    """Bin (1 = easiest) of each question id: equal-size bins of questions ranked from the
    highest value to the lowest (NaN lowest), ties by id."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    ranked = sorted(
        values, key=lambda q: (-(values[q] if not math.isnan(values[q]) else -math.inf), q)
    )
    bins = {}
    for position, question in enumerate(ranked):
        bins[question] = min(num_bins, position * num_bins // max(1, len(ranked)) + 1)
    return bins


def balanced_folds(question_ids: Sequence[str], salt: str = "") -> dict[str, int]:
    """Fold 0 or 1 of each question: ids ranked by a salted hash, then alternated, so the two
    folds differ in size by at most one and do not follow any order the ids came in."""
    ranked = sorted(
        question_ids,
        key=lambda q: hashlib.blake2b(f"{salt}\x00{q}".encode(), digest_size=8).digest(),
    )
    return {question: position % 2 for position, question in enumerate(ranked)}
