"""95% intervals for a study's accuracies and for the effects its findings rest on, by
bootstrap over questions.

A `Bootstrap` draws its resamples once: each replicate resamples the questions with
replacement within each (oracle) difficulty bin, so bins keep their sizes, from a fixed seed.
A mean over one bin's questions (under any binning) is the mean over the slots they fill. Every
quantity is computed on the same replicates, so the interval of a difference (two strategies,
two budgets, the small model against the larger one) is paired: a question that is hard for
both counts once. Intervals are percentile intervals of the replicates.

The compute-optimal curve is a select-then-score procedure (`ttc_jax.study.selection`): its
interval repeats the whole procedure on each replicate (the cross-validated picks too), with
the copies of a question kept in one fold, so the interval includes the noise of selection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ttc_jax.study.selection import Correctness, select

LEVEL = 0.95
# Separates a resampled copy's index from the question id (copies share the id's fold).
COPY = "\x00"


def origin(question: str) -> str:
    """The question a resampled copy was drawn from."""
    return question.split(COPY, 1)[0]


class Bootstrap:
    """Resamples of the questions of ``bins`` (question -> bin), stratified by bin."""

    def __init__(self, bins: Mapping[str, int], replicates: int, seed: int):
        if replicates < 10:
            raise ValueError(f"bootstrap replicates must be >= 10, got {replicates}")
        self.questions = sorted(bins)
        self.bins = dict(bins)
        position = {q: i for i, q in enumerate(self.questions)}
        rng = np.random.default_rng(seed)
        columns = []
        for b in sorted(set(bins.values())):
            members = np.array([position[q] for q in self.questions if bins[q] == b])
            columns.append(members[rng.integers(0, len(members), (replicates, len(members)))])
        # [replicates, questions]: the question each resampled slot holds.
        self.index = np.concatenate(columns, axis=1) if columns else np.zeros((replicates, 0), int)
        self.replicates = replicates

    def _vector(self, values: Mapping[str, float]) -> np.ndarray:
        return np.array([float(values.get(q, math.nan)) for q in self.questions])

    def replicates_of(self, values: Mapping[str, float]) -> np.ndarray:
        """The mean of ``values`` (question -> value) on each replicate; questions missing
        from ``values`` are left out (so ``values`` of one bin's questions give that bin's
        mean over the slots its questions fill)."""
        drawn = self._vector(values)[self.index]
        present = np.isfinite(drawn)
        counts = present.sum(axis=1)
        sums = np.where(present, drawn, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)

    def interval(self, values: Mapping[str, float]) -> list[float]:
        """The 95% interval of the mean of ``values``."""
        return percentiles(self.replicates_of(values))

    def difference(self, first: Mapping[str, float], second: Mapping[str, float]) -> dict:
        """The effect mean(first) - mean(second) and its paired 95% interval."""
        return effect(
            _mean(first) - _mean(second), self.replicates_of(first) - self.replicates_of(second)
        )

    def resampled(self, replicate: int) -> list[str]:
        """Replicate ``replicate``'s questions, each copy named apart (see `origin`)."""
        return [f"{self.questions[i]}{COPY}{slot}" for slot, i in enumerate(self.index[replicate])]

    def selected_replicates(
        self,
        correct: Correctness,
        bins: Mapping[str, int],
        budget: int,
        labels: Sequence[str],
        salt: str,
    ) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
        """Cross-validated compute-optimal accuracy at ``budget`` on each replicate (the
        selection repeated on the replicate's questions), overall and per bin of ``bins``;
        None when nothing ran there."""
        out, by_bin = [], {}
        for r in range(self.replicates):
            copies = self.resampled(r)
            copy_bins = {c: bins[origin(c)] for c in copies}
            copy_correct = {
                label: {budget: {c: correct[label][budget][origin(c)] for c in copies}}
                for label in labels
                if budget in correct.get(label, {})
                and all(q in correct[label][budget] for q in self.questions)
            }
            chosen = select(copy_correct, copy_bins, budget, labels, salt, fold_of=origin)
            if chosen is None:
                return None
            out.append(chosen.accuracy)
            for b, accuracy in chosen.by_bin.items():
                by_bin.setdefault(b, []).append(accuracy)
        return np.array(out), {b: np.array(v) for b, v in by_bin.items()}


def _mean(values: Mapping[str, float]) -> float:
    return sum(map(float, values.values())) / len(values) if values else math.nan


def percentiles(replicates: np.ndarray) -> list[float]:
    """The central ``LEVEL`` interval of bootstrap replicates."""
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return [math.nan, math.nan]
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def effect(point: float, replicates: np.ndarray) -> dict:
    """An effect with its interval, as the summary stores it."""
    return {"effect": float(point), "interval": percentiles(replicates)}


def side(found: dict, paper_sign: int) -> str:
    """The verdict of one effect: "reproduces" when its interval lies on the paper's side of
    zero (``paper_sign`` +1: the paper found it positive, -1: negative), "does not reproduce"
    when it lies on the other side, "inconclusive" when it holds zero."""
    low, high = found["interval"]
    if math.isnan(low):
        return "inconclusive"
    if paper_sign * low > 0 and paper_sign * high > 0:
        return "reproduces"
    if paper_sign * low < 0 and paper_sign * high < 0:
        return "does not reproduce"
    return "inconclusive"
