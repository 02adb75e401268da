"""Compute-optimal selection: the best strategy per difficulty bin and budget, measured without
selecting on the questions it is measured on.

For a budget B and a bin, the candidates are the strategies with a result at B for every
question of the bin. Two-fold cross-validation (the paper's): the bin's questions are split in
two balanced folds; the strategy with the best accuracy on one fold is scored on the other,
and the other way round; the compute-optimal accuracy at B is the share of questions (over all
bins) answered right by the strategy picked on the fold they were not in. The deployable table
picks on all of a bin's questions. Ties go to the strategy listed first (the cheaper and
simpler ones come first in a study's label order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from ttc_jax.study.difficulty import balanced_folds

# correct[label][budget][question_id] -> bool
Correctness = Mapping[str, Mapping[int, Mapping[str, bool]]]


@dataclasses.dataclass(frozen=True)
class Selection:
    budget: int
    accuracy: float  # cross-validated, over every question with a bin
    by_bin: dict[int, float]  # cross-validated, per bin
    table: dict[int, str]  # bin -> label picked on all of the bin's questions
    folds: dict[int, tuple[str, str]]  # bin -> labels picked on fold 0 and on fold 1


def _accuracy(correct: Mapping[str, bool], questions: Sequence[str]) -> float:
    return sum(correct[q] for q in questions) / len(questions) if questions else 0.0


def _best(correct: Correctness, labels, budget: int, questions) -> str | None:
    best, best_accuracy = None, -1.0
    for label in labels:
        accuracy = _accuracy(correct[label][budget], questions)
        if accuracy > best_accuracy:
            best, best_accuracy = label, accuracy
    return best


def select(
    correct: Correctness,
    bins: Mapping[str, int],
    budget: int,
    labels: Sequence[str],
    salt: str = "",
    fold_of: Callable[[str], str] | None = None,
) -> Selection | None:
    """Cross-validated compute-optimal accuracy and table at one budget (None when no label
    has results at it). ``labels`` in preference order for ties; ``salt`` varies the folds.
    ``fold_of`` maps a question to the one whose fold it shares (a bootstrap's copies of one
    question stay in one fold, so no copy is picked on and scored on together)."""
    available = [
        label
        for label in labels
        if budget in correct.get(label, {}) and all(q in correct[label][budget] for q in bins)
    ]
    if not available:
        return None
    right, table, picks, by_bin = 0, {}, {}, {}
    for bin_ in sorted(set(bins.values())):
        questions = sorted(q for q, b in bins.items() if b == bin_)
        folds = _folds(questions, f"{salt}:{bin_}:{budget}", fold_of)
        halves = [[q for q in questions if folds[q] == f] for f in (0, 1)]
        picked, bin_right = [], 0
        for held_out, trained_on in ((halves[0], halves[1]), (halves[1], halves[0])):
            if not trained_on:
                # A bin whose questions all fall in one fold (one question; a bootstrap's
                # copies of one): pick on the other bins, never on the questions scored.
                trained_on = [q for q in bins if bins[q] != bin_] or held_out
            label = _best(correct, available, budget, trained_on)
            picked.append(label)
            bin_right += sum(correct[label][budget][q] for q in held_out)
        right += bin_right
        by_bin[bin_] = bin_right / len(questions)
        picks[bin_] = (picked[1], picked[0])  # picked on fold 0, then on fold 1
        table[bin_] = _best(correct, available, budget, questions)
    return Selection(budget, right / len(bins), by_bin, table, picks)


def _folds(questions, salt: str, fold_of) -> dict[str, int]:
    if fold_of is None:
        return balanced_folds(questions, salt)
    shared = balanced_folds(sorted({fold_of(q) for q in questions}), salt)
    return {q: shared[fold_of(q)] for q in questions}


def efficiency(
    optimal: Mapping[int, float], baseline: Mapping[int, float]
) -> dict[int, int | None]:
    """For each budget B of ``baseline``, the smallest budget at which ``optimal`` accuracy
    reaches the baseline's accuracy at B (None if it never does)."""
    reached = {}
    for budget, target in sorted(baseline.items()):
        reached[budget] = next(
            (b for b, accuracy in sorted(optimal.items()) if accuracy >= target), None
        )
    return reached
