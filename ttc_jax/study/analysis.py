"""From a study's rows to its summary: accuracy per strategy and budget, per difficulty bin,
the cross-validated compute-optimal curves and tables, the efficiency against best-of-N
weighted, the best revision ratio per bin, and the FLOPs exchange.

Every number is computed from ``results.jsonl`` and ``difficulty.jsonl`` alone, so a summary
can be rebuilt from a finished work directory. JSON keys are strings (budgets, bins).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from ttc_jax.search.results import non_embedding_params
from ttc_jax.study.difficulty import quantile_bins
from ttc_jax.study.exchange import exchange
from ttc_jax.study.selection import efficiency, select

BASELINE = "best_of_n_weighted"
MEASURES = ("oracle", "predicted", "predicted_charged")


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def correctness(rows: Sequence[dict]) -> dict[str, dict[int, dict[str, bool]]]:
    """label -> budget -> question -> correct."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        table[row["strategy"]][row["budget"]][row["question_id"]] = bool(row["correct"])
    return table


def bin_edges(values: Mapping[str, float], bins: Mapping[str, int], num_bins: int) -> list[float]:
    """The ``num_bins - 1`` score thresholds between bins (bin 1 holds the highest scores):
    edge b lies midway between the lowest score in bins 1..b and the highest in bins after b.
    With fewer questions than bins some bins are empty; an edge with no question on one side
    sits at the nearest score on the other."""
    edges = []
    for b in range(1, num_bins):
        upper = [values[q] for q, x in bins.items() if x <= b]
        lower = [values[q] for q, x in bins.items() if x > b]
        if upper and lower:
            edges.append((min(upper) + max(lower)) / 2)
        else:
            edges.append(min(upper) if upper else max(lower))
    return edges


def bin_of(score: float, edges: Sequence[float]) -> int:
    """The bin of a predicted score under `bin_edges` (1 = easiest)."""
    return 1 + sum(score < edge for edge in edges)


def analyse(study) -> dict:
    config = study.config
    budgets = list(config.budgets)
    rows = [r for r in study.results.values() if r["seed"] == config.seed]
    difficulty = {
        r["question_id"]: r for r in study.difficulty.values() if r["seed"] == config.seed
    }
    questions = [p.id for p in study.problems]
    correct = correctness(rows)
    # Cheaper and simpler strategies first: selection breaks ties in this order.
    labels = [label for label in study.labels() if label in correct]
    values = {m: {q: difficulty[q][m] for q in questions} for m in MEASURES}
    bins = {m: quantile_bins(values[m], config.difficulty.bins) for m in MEASURES}

    accuracy = {
        label: {b: _mean(correct[label][b].values()) for b in budgets if b in correct[label]}
        for label in labels
    }
    by_bin = {
        m: {
            label: {b: _per_bin(correct[label][b], bins[m]) for b in budgets if b in correct[label]}
            for label in labels
        }
        for m in ("oracle", "predicted")
    }
    selections = {m: {} for m in MEASURES}
    for m in ("oracle", "predicted"):
        for b in budgets:
            chosen = select(correct, bins[m], b, labels, salt=f"{config.seed}:{m}")
            if chosen is not None:
                selections[m][b] = chosen
    charged = config.difficulty.charged_samples
    for b in budgets:
        spendable = [x for x in budgets if x <= b - charged]
        if spendable:
            chosen = select(
                correct, bins["predicted_charged"], spendable[-1], labels, salt=f"{config.seed}"
            )
            if chosen is not None:
                selections["predicted_charged"][b] = chosen
    # The deployable table: picks on the charged estimate's bins at every budget (ttc-solve
    # spends the estimate's samples on top of the budget).
    deploy = {}
    for b in budgets:
        chosen = select(correct, bins["predicted_charged"], b, labels, salt=f"{config.seed}")
        if chosen is not None:
            deploy[b] = chosen.table
    optimal = {m: {b: s.accuracy for b, s in selections[m].items()} for m in MEASURES}
    baseline = accuracy.get(BASELINE, {})

    summary = {
        "questions": len(questions),
        "budgets": budgets,
        "labels": labels,
        "accuracy": _keys(accuracy),
        "accuracy_by_bin": _keys(by_bin),
        "compute_optimal": _keys(optimal),
        "compute_optimal_by_bin": _keys(
            {m: {b: s.by_bin for b, s in selections[m].items()} for m in MEASURES}
        ),
        "tables": _keys(
            {
                **{m: {b: s.table for b, s in selections[m].items()} for m in MEASURES},
                "deploy": deploy,
            }
        ),
        "efficiency": _keys({m: efficiency(optimal[m], baseline) for m in ("oracle", "predicted")}),
        "compute": _keys(_mean_compute(rows, labels, budgets)),
        "difficulty": {
            "samples": config.difficulty.samples,
            "charged_samples": charged,
            "bins": config.difficulty.bins,
            "charged_edges": bin_edges(
                values["predicted_charged"], bins["predicted_charged"], config.difficulty.bins
            ),
            "oracle_by_level": _keys(_by_level(difficulty, questions)),
            "bin_counts": {m: _keys(_counts(bins[m])) for m in MEASURES},
        },
        "revision_ratio_by_bin": _keys(_best_revision(by_bin["oracle"], budgets)),
    }
    summary["exchange"] = _exchange(study, rows, bins["oracle"], selections["oracle"], budgets)
    return summary


def _per_bin(correct: Mapping[str, bool], bins: Mapping[str, int]) -> dict[int, float]:
    grouped = defaultdict(list)
    for question, b in bins.items():
        if question in correct:
            grouped[b].append(correct[question])
    return {b: _mean(v) for b, v in sorted(grouped.items())}


def _mean_compute(rows, labels, budgets) -> dict:
    flops = defaultdict(lambda: defaultdict(list))
    for row in rows:
        flops[row["strategy"]][row["budget"]].append(row["policy_flops"] + row["verifier_flops"])
    return {
        label: {b: _mean(flops[label][b]) for b in budgets if flops[label][b]} for label in labels
    }


def _by_level(difficulty: Mapping[str, dict], questions) -> dict:
    levels = defaultdict(list)
    for q in questions:
        levels[difficulty[q]["level"]].append(difficulty[q]["oracle"])
    return {level: _mean(v) for level, v in sorted(levels.items(), key=lambda x: str(x[0]))}


def _counts(bins: Mapping[str, int]) -> dict[int, int]:
    counts = defaultdict(int)
    for b in bins.values():
        counts[b] += 1
    return dict(sorted(counts.items()))


def _best_revision(by_bin: Mapping, budgets) -> dict:
    """budget -> bin -> the revision label (sequential length) with the best accuracy."""
    best = {}
    for b in budgets:
        revisions = {
            label: per_budget[b]
            for label, per_budget in by_bin.items()
            if label.startswith("revisions_s") and b in per_budget
        }
        if not revisions:
            continue
        bins_ = sorted({x for per in revisions.values() for x in per})
        best[b] = {
            x: max(revisions, key=lambda label: (revisions[label].get(x, -1), -_length(label)))
            for x in bins_
        }
    return best


def _length(label: str) -> int:
    return int(label.removeprefix("revisions_s"))


def _exchange(study, rows, oracle_bins, selections, budgets) -> dict | None:
    large_rows = {r["question_id"]: r for r in rows if r["strategy"] == "larger_greedy"}
    if study.models.policy_14x is None or not large_rows:
        return None
    small_params = non_embedding_params(study.models.policy.config)
    large_params = non_embedding_params(study.models.policy_14x.config)
    large_correct = {q: r["correct"] for q, r in large_rows.items()}
    points = exchange(
        study.config.exchange_ratios,
        large_params / small_params,
        budgets,
        {b: s.by_bin for b, s in selections.items()},
        {b: s.accuracy for b, s in selections.items()},
        _per_bin(large_correct, oracle_bins),
        _mean(large_correct.values()),
    )
    return {
        "size_ratio": large_params / small_params,
        "points": [
            {
                "ratio": p.ratio,
                "multiplier": p.multiplier,
                "budget": p.budget,
                "small_by_bin": _keys(p.small),
                "large_by_bin": _keys(p.large),
                "small_overall": p.small_overall,
                "large_overall": p.large_overall,
            }
            for p in points
        ],
    }


def _keys(value):
    """Nested dicts with every key a string (JSON's)."""
    if isinstance(value, Mapping):
        return {str(k): _keys(v) for k, v in value.items()}
    return value
