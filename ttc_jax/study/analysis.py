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

from ttc_jax.models.config import non_embedding_params
from ttc_jax.study.difficulty import quantile_bins
from ttc_jax.study.exchange import exchange
from ttc_jax.study.intervals import LEVEL, Bootstrap, percentiles
from ttc_jax.study.intervals import effect as _effect
from ttc_jax.study.selection import efficiency, select

BASELINE = "best_of_n_weighted"
# The paper's headline: compute-optimal nearly matches best-of-N with 4x less compute.
PAPER_FACTOR = 4
MEASURES = ("oracle", "predicted", "predicted_charged")
# Strategy pairs whose paired differences the findings read (at every budget both ran).
COMPARED = (
    ("beam_msqrt", BASELINE),
    ("lookahead_k1", "beam_msqrt"),
    ("lookahead_k3", "beam_msqrt"),
)


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
    # Rows of questions the run does not ask about (a study extended, then run on fewer)
    # stay in the store but out of this summary.
    asked = set(questions)
    rows = [r for r in rows if r["question_id"] in asked]
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
    boot = Bootstrap(bins["oracle"], config.bootstrap.replicates, config.bootstrap.seed)
    # Cross-validated selection repeated on every replicate, for the curves' intervals.
    selected = {m: {} for m in MEASURES}
    for m in MEASURES:
        for b, chosen in selections[m].items():
            at = chosen.budget
            salt = f"{config.seed}" if m == "predicted_charged" else f"{config.seed}:{m}"
            found = boot.selected_replicates(correct, bins[m], at, labels, salt)
            if found is not None:
                selected[m][b] = found

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
        "bootstrap": {
            "replicates": config.bootstrap.replicates,
            "seed": config.bootstrap.seed,
            "level": LEVEL,
            "stratified_by": "oracle bin",
        },
        "accuracy_interval": _keys(
            {
                label: {b: boot.interval(correct[label][b]) for b in per}
                for label, per in accuracy.items()
            }
        ),
        "accuracy_by_bin_interval": _keys(
            {
                m: {
                    label: {
                        b: {x: boot.interval(_in_bin(correct[label][b], bins[m], x)) for x in per}
                        for b, per in per_label.items()
                    }
                    for label, per_label in by_bin[m].items()
                }
                for m in by_bin
            }
        ),
        "compute_optimal_interval": _keys(
            {m: {b: percentiles(reps) for b, (reps, _) in selected[m].items()} for m in MEASURES}
        ),
        "effects": effects(boot, correct, labels, budgets, bins["oracle"], optimal, selected),
    }
    summary["exchange"] = _exchange(
        study, rows, bins["oracle"], selections["oracle"], budgets, boot, selected["oracle"]
    )
    return summary


def _in_bin(values: Mapping[str, bool], bins: Mapping[str, int], bin_: int) -> dict:
    return {q: v for q, v in values.items() if bins.get(q) == bin_}


def effect_name(first: str, second: str, bin_: int | str | None = None) -> str:
    """The key of an effect in ``summary["effects"]``: ``A - B`` (``A - B, bin X``), where
    A and B are ``label@budget``."""
    return f"{first} - {second}" + ("" if bin_ is None else f", bin {bin_}")


def effects(boot, correct, labels, budgets, oracle_bins, optimal, selected) -> dict:
    """Every paired effect the report's findings rest on, with its 95% interval."""
    out = {}

    def strategy(label, b):
        return correct[label][b] if label in correct and b in correct[label] else None

    for m in ("oracle", "predicted"):
        for b in budgets:
            for target in (b, PAPER_FACTOR * b):
                base = strategy(BASELINE, target)
                if base is None or b not in selected[m]:
                    continue
                name = effect_name(f"compute_optimal_{m}@{b}", f"{BASELINE}@{target}")
                out[name] = _effect(
                    optimal[m][b] - _mean(base.values()),
                    selected[m][b][0] - boot.replicates_of(base),
                )
    revisions = sorted((x for x in labels if x.startswith("revisions_s")), key=_length)
    for b in budgets:
        pairs = list(COMPARED)
        fitting = [x for x in revisions if strategy(x, b) is not None]
        if len(fitting) >= 2:
            pairs.append((fitting[-1], fitting[0]))  # fully sequential against fully parallel
        if len(fitting) >= 3:
            middle = fitting[1:-1]
            pairs.append((middle[len(middle) // 2], fitting[0]))  # an intermediate ratio
        for first, second in pairs:
            a, z = strategy(first, b), strategy(second, b)
            if a is None or z is None:
                continue
            out[effect_name(f"{first}@{b}", f"{second}@{b}")] = boot.difference(a, z)
            for x in sorted(set(oracle_bins.values())):
                out[effect_name(f"{first}@{b}", f"{second}@{b}", x)] = boot.difference(
                    _in_bin(a, oracle_bins, x), _in_bin(z, oracle_bins, x)
                )
    return out


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


def _exchange(study, rows, oracle_bins, selections, budgets, boot, selected) -> dict | None:
    """The FLOPs exchange's points, each measured one with intervals: the small model's
    compute-optimal accuracy (selection bootstrapped), the larger model's, and their paired
    difference, overall and per oracle bin."""
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
    large_by_bin = {x: _in_bin(large_correct, oracle_bins, x) for x in set(oracle_bins.values())}
    out = []
    for p in points:
        point = {
            "ratio": p.ratio,
            "multiplier": p.multiplier,
            "budget": p.budget,
            "small_by_bin": _keys(p.small),
            "large_by_bin": _keys(p.large),
            "small_overall": p.small_overall,
            "large_overall": p.large_overall,
            "large_interval": boot.interval(large_correct),
            "large_by_bin_interval": _keys(
                {x: boot.interval(v) for x, v in sorted(large_by_bin.items())}
            ),
        }
        if p.budget is not None and p.budget in selected:
            small, small_by_bin = selected[p.budget]
            point["small_interval"] = percentiles(small)
            point["small_by_bin_interval"] = _keys(
                {x: percentiles(v) for x, v in sorted(small_by_bin.items())}
            )
            point["effect"] = _effect(
                p.small_overall - p.large_overall, small - boot.replicates_of(large_correct)
            )
            point["effect_by_bin"] = _keys(
                {
                    x: _effect(p.small[x] - p.large[x], v - boot.replicates_of(large_by_bin[x]))
                    for x, v in sorted(small_by_bin.items())
                }
            )
        out.append(point)
    return {"size_ratio": large_params / small_params, "points": out}


def _keys(value):
    """Nested dicts with every key a string (JSON's)."""
    if isinstance(value, Mapping):
        return {str(k): _keys(v) for k, v in value.items()}
    return value
