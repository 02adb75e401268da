"""The study's outputs: ``summary.json``, ``strategy_table.json``, the figures and
``report.md``, whose findings say, with numbers, which of the paper's findings reproduce here
and which do not. Nothing is tuned to make a finding hold: each is read off the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ttc_jax.study import plots

BASELINE = "best_of_n_weighted"
# The paper's headline: compute-optimal nearly matches best-of-N with 4x less compute.
PAPER_FACTOR = 4
# "Nearly matches": within this many accuracy points.
NEAR = 0.01


def _get(table: dict, *keys):
    for key in keys:
        if not isinstance(table, dict) or str(key) not in table:
            return None
        table = table[str(key)]
    return table


def _pct(value) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{100 * value:.1f}%")
    )


def _listed(items) -> str:
    """English for a list: "1", "1 and 2", "1, 2 and 3"."""
    items = [str(x) for x in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _bins(bins) -> str:
    return "no bin" if not bins else ("bin " if len(bins) == 1 else "bins ") + _listed(bins)


def _unmeasurable(finding: str, why: str) -> str:
    return f"{finding}: not measurable here ({why})."


def _degenerate(summary: dict) -> str | None:
    """Why no accuracy can be compared, when every one is 0% or every one is 100%."""
    values = {v for per in summary["accuracy"].values() for v in per.values() if v == v}
    if not values:
        return "no strategy has results"
    if values <= {0.0} or values <= {1.0}:
        return f"every strategy's accuracy is {_pct(values.pop())} at every budget"
    return None


def findings(summary: dict) -> list[str]:
    """Plain statements, each marked "reproduces", "does not reproduce", "partly reproduces"
    or "not measurable here" (with the reason: too few budgets or bins, or accuracies that
    are all 0% or all 100%)."""
    why = _degenerate(summary)
    if why is not None:
        return [f"No finding is measurable here: {why} ({summary['questions']} questions)."]
    budgets = summary["budgets"]
    baseline = summary["accuracy"].get(BASELINE, {})
    out = []
    for measure in ("oracle", "predicted"):
        curve = summary["compute_optimal"][measure]
        gaps = [
            (b, _get(curve, b) - _get(baseline, b))
            for b in budgets
            if _get(curve, b) is not None and _get(baseline, b) is not None
        ]
        finding = (
            f"Compute-optimal ({measure} bins) matches or beats best-of-N weighted at every budget"
        )
        if not gaps:
            out.append(_unmeasurable(finding, "best-of-N weighted was not run"))
            continue
        short = [(b, g) for b, g in gaps if g < -NEAR]
        verdict = "reproduces" if not short else "does not reproduce"
        detail = ", ".join(f"B={b}: {100 * g:+.1f} points" for b, g in gaps)
        out.append(f"{finding}: {verdict} ({detail}).")
    curve = summary["compute_optimal"]["oracle"]
    pairs = []
    for b in budgets:
        if b * PAPER_FACTOR in budgets and _get(curve, b) is not None:
            target = _get(baseline, b * PAPER_FACTOR)
            if target is not None:
                pairs.append((b, _get(curve, b), target))
    finding = (
        f"Compute-optimal (oracle bins) at budget B reaches best-of-N weighted at {PAPER_FACTOR}B"
    )
    if pairs:
        reached = [b for b, mine, theirs in pairs if mine >= theirs - NEAR]
        verdict = "reproduces" if reached else "does not reproduce"
        out.append(
            f"{finding}: {verdict} ("
            + ", ".join(f"B={b}: {_pct(m)} vs {_pct(t)}" for b, m, t in pairs)
            + ")."
        )
    else:
        out.append(
            _unmeasurable(finding, f"needs budgets B and {PAPER_FACTOR}B with best-of-N weighted")
        )
    out.extend(_beam_findings(summary))
    out.extend(_revision_findings(summary))
    out.extend(_exchange_findings(summary))
    return out


def _beam_findings(summary: dict) -> list[str]:
    budgets = summary["budgets"]
    by_bin = summary["accuracy_by_bin"]["oracle"]
    beam, base = by_bin.get("beam_msqrt"), by_bin.get(BASELINE)
    shape_finding = (
        "Beam search (M = sqrt N) beats best-of-N weighted at low budgets and falls behind at "
        "high ones"
    )
    bin_finding = (
        "On the easiest bin beam search over-optimises (worse than best-of-N) at high budget, "
        "and wins on medium/hard bins"
    )
    if not beam or not base:
        why = "needs beam_msqrt and best_of_n_weighted"
        return [_unmeasurable(shape_finding, why), _unmeasurable(bin_finding, why)]
    fitted = [b for b in budgets if _get(beam, b) and _get(base, b) and b > 1]
    if len(fitted) < 2:
        why = "needs two budgets above 1 where both ran; this study has " + (
            f"only B={fitted[0]}" if fitted else "none"
        )
        return [_unmeasurable(shape_finding, why), _unmeasurable(bin_finding, why)]
    low, high = fitted[0], fitted[-1]
    bins = sorted(_get(base, low), key=int)

    def diff(b, x):
        return _get(beam, b, x) - _get(base, b, x)

    overall = summary["accuracy"]
    low_gap = _get(overall, "beam_msqrt", low) - _get(overall, BASELINE, low)
    high_gap = _get(overall, "beam_msqrt", high) - _get(overall, BASELINE, high)
    shape = low_gap > 0 and high_gap < low_gap
    lines = [
        f"{shape_finding}: {'reproduces' if shape else 'does not reproduce'} (B={low}: "
        f"{100 * low_gap:+.1f} points, B={high}: {100 * high_gap:+.1f} points).",
    ]
    if len(bins) < 2:
        lines.append(_unmeasurable(bin_finding, f"needs two difficulty bins, has {len(bins)}"))
    else:
        easy = bins[0]
        hard = bins[1:-1] or bins[-1:]
        easy_worse = diff(high, easy) < 0
        hard_better = any(diff(b, x) > 0 for b in (low, high) for x in hard)
        lines.append(
            f"{bin_finding}: {_verdict(easy_worse, hard_better)} (bin {easy} at "
            f"B={high}: {100 * diff(high, easy):+.1f} points; medium/hard bins at B={low}: "
            + ", ".join(f"bin {x} {100 * diff(low, x):+.1f}" for x in hard)
            + f"; at B={high}: "
            + ", ".join(f"bin {x} {100 * diff(high, x):+.1f}" for x in hard)
            + ")."
        )
    lookahead = [label for label in ("lookahead_k1", "lookahead_k3") if label in overall]
    if lookahead:
        compared = []
        for label in lookahead:
            for b in budgets:
                mine = _get(overall, label, b)
                if mine is None:
                    continue
                others = [
                    v[str(b)]
                    for k, v in overall.items()
                    if k != label and str(b) in v and not k.startswith("revisions")
                ]
                if others:
                    compared.append(mine <= min(others) + NEAR)
        finding = "Lookahead is usually the worst search at equal generation budget"
        if compared:
            share = sum(compared) / len(compared)
            lines.append(
                f"{finding}: {'reproduces' if share >= 0.5 else 'does not reproduce'} (worst "
                f"or within {100 * NEAR:.0f} point of worst in {sum(compared)} of "
                f"{len(compared)} cells)."
            )
        else:
            lines.append(_unmeasurable(finding, "no other search ran at its budgets"))
    return lines


def _verdict(first: bool, second: bool) -> str:
    if first and second:
        return "reproduces"
    return "partly reproduces" if first or second else "does not reproduce"


def _revision_findings(summary: dict) -> list[str]:
    best = summary.get("revision_ratio_by_bin") or {}
    if not best:
        return []
    finding = (
        "Easy questions do best fully sequential and harder ones at an intermediate "
        "sequential:parallel ratio"
    )
    budget = max(best, key=int)
    picks = best[budget]
    bins = sorted(picks, key=int)
    if int(budget) < 4 or len(bins) < 2:
        return [
            _unmeasurable(
                finding,
                f"needs a budget of at least 4 (an intermediate ratio) and two bins; the "
                f"largest budget with revisions is {budget}, with {len(bins)} bin(s)",
            )
        ]
    lengths = {x: int(picks[x].removeprefix("revisions_s")) for x in bins}
    full = int(budget)
    easy_sequential = lengths[bins[0]] == full
    harder_between = any(1 < lengths[x] < full for x in bins[1:])
    return [
        f"{finding}: {_verdict(easy_sequential, harder_between)} (best sequential length at "
        f"budget {budget} by bin: " + ", ".join(f"bin {x}: {lengths[x]}" for x in bins) + ")."
    ]


def _exchange_findings(summary: dict) -> list[str]:
    data = summary.get("exchange")
    if not data:
        return ["FLOPs exchange: not run (no larger policy)."]
    lines = []
    for point in data["points"]:
        if point["budget"] is None:
            lines.append(
                f"FLOPs exchange at R={point['ratio']:g}: not measured (the matched compute is "
                f"{point['multiplier']:.1f} samples; it needs a budget between "
                f"{point['multiplier'] / 2:.1f} and {point['multiplier']:.1f} in the grid)."
            )
            continue
        bins = sorted(point["large_by_bin"], key=int)
        wins = [x for x in bins if point["small_by_bin"].get(x, 0) > point["large_by_bin"][x]]
        lines.append(
            f"FLOPs exchange at R={point['ratio']:g} (matched {point['multiplier']:.1f} "
            f"samples, budget {point['budget']}): the small model with test-time compute wins "
            f"on {_bins(wins)} of the {len(bins)} (overall "
            f"{_pct(point['small_overall'])} vs {_pct(point['large_overall'])} for the "
            f"{data['size_ratio']:.1f}x model)."
        )
    finding = "Test-time compute beats the larger model on easy questions at low R"
    easy_low = data["points"][0]
    if easy_low["budget"] is None:
        lines.append(_unmeasurable(finding, f"R={easy_low['ratio']:g} was not measured"))
    else:
        easiest = sorted(easy_low["large_by_bin"], key=int)[0]
        paper = easy_low["small_by_bin"].get(easiest, 0) > easy_low["large_by_bin"][easiest]
        lines.append(
            f"{finding}: {'reproduces' if paper else 'does not reproduce'} (see the line above "
            f"for R={easy_low['ratio']:g})."
        )
    return lines


def caveats(summary: dict) -> list[str]:
    """Warnings about sizes the per-bin figures rest on."""
    counts = summary["difficulty"]["bin_counts"]["oracle"]
    num_bins = summary["difficulty"]["bins"]
    empty = [b for b in range(1, num_bins + 1) if counts.get(str(b), 0) == 0]
    single = [b for b in range(1, num_bins + 1) if counts.get(str(b), 0) == 1]
    out = []
    if empty:
        out.append(
            f"{summary['questions']} questions in {num_bins} bins: {_bins(empty)} "
            f"{'is' if len(empty) == 1 else 'are'} empty, so the difficulty edges around "
            f"{'it' if len(empty) == 1 else 'them'} repeat and the deployed table fills "
            f"{'its row' if len(empty) == 1 else 'their rows'} from the nearest bin."
        )
    if single:
        out.append(f"{_bins(single).capitalize()} rest on one question each.")
    return out


def _table(summary: dict, rows: list[str]) -> list[str]:
    budgets = summary["budgets"]
    lines = [
        "| strategy | " + " | ".join(f"B={b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for label in rows:
        per = summary["accuracy"].get(label, {})
        lines.append(f"| {label} | " + " | ".join(_pct(_get(per, b)) for b in budgets) + " |")
    for measure in ("oracle", "predicted", "predicted_charged"):
        per = summary["compute_optimal"].get(measure, {})
        lines.append(
            f"| compute-optimal ({measure}) | "
            + " | ".join(_pct(_get(per, b)) for b in budgets)
            + " |"
        )
    return lines


def _bin_table(rows: dict, budgets) -> list[str]:
    """bin -> budget -> label as a Markdown table."""
    budgets = [b for b in budgets if any(str(b) in per for per in rows.values())]
    lines = [
        "| bin | " + " | ".join(f"B={b}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for x in sorted(rows, key=int):
        lines.append(f"| {x} | " + " | ".join(rows[x].get(str(b), "") for b in budgets) + " |")
    return lines


def report_text(summary: dict, figures: list[str], deployed: dict) -> str:
    """The report; ``deployed`` is the strategy table written beside it."""
    skipped = [name for name in plots.FIGURES if name not in figures]
    notes = caveats(summary)
    samples = deployed["difficulty"]["samples"]
    lines = [
        "# Compute-optimal test-time scaling: study report",
        "",
        f"{summary['questions']} questions; budgets {', '.join(map(str, summary['budgets']))} "
        "(generations per question); difficulty from "
        f"{summary['difficulty']['samples']} samples per question in "
        f"{summary['difficulty']['bins']} bins.",
        "",
        *([*[f"Caveat: {note}" for note in notes], ""] if notes else []),
        "## Findings",
        "",
        *[f"- {line}" for line in findings(summary)],
        "",
        "## Accuracy by strategy and budget",
        "",
        *_table(summary, summary["labels"]),
        "",
        "## Deployed strategy table (strategy_table.json, what ttc-solve runs)",
        "",
        f"Bins from the PRM's mean final score over {samples} samples of the question (no "
        "answer key needed; `ttc_jax.solve` draws and charges them before the strategy runs); "
        "bin 1 = easiest.",
        "",
        *_bin_table(deployed["table"], summary["budgets"]),
        "",
        "## Compute-optimal table on oracle bins (for comparison: needs the answer key)",
        "",
        *_bin_table(_by_bin(summary["tables"]["oracle"]), summary["budgets"]),
        "",
        "## Figures",
        "",
        *[f"![{name}]({name})" for name in figures],
    ]
    if skipped:
        lines += ["", f"Not drawn, nothing to show: {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def strategy_table(study, summary: dict) -> dict:
    """The deployable artefact: bins by the PRM's mean final score over a few samples
    (charged to the budget by `ttc_jax.solve`), and the strategy per bin and budget."""
    config = study.config
    return {
        "difficulty": {
            "measure": "prm_mean_final_score",
            "samples": config.difficulty.charged_samples,
            "edges": summary["difficulty"]["charged_edges"],
        },
        "budgets": summary["budgets"],
        "table": _every_bin(_by_bin(summary["tables"]["deploy"]), config.difficulty.bins),
        "search": config.search.to_dict(),
    }


def _by_bin(tables: dict) -> dict:
    """budget -> bin -> label, turned into bin -> budget -> label."""
    out: dict = {}
    for budget, per_bin in tables.items():
        for b, label in per_bin.items():
            out.setdefault(b, {})[budget] = label
    return out


def _every_bin(table: dict, num_bins: int) -> dict:
    """``table`` with a row for every bin 1..``num_bins``: a bin no question fell in (fewer
    questions than bins) takes the row of the nearest bin that has one, the easier on a tie."""
    filled = sorted(int(b) for b in table)
    if not filled:
        return {}
    return {
        str(b): table[str(min(filled, key=lambda f: (abs(f - b), f)))]
        for b in range(1, num_bins + 1)
    }


def write_outputs(study, summary: dict) -> None:
    directory = study.workdir
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = strategy_table(study, summary)
    (directory / "strategy_table.json").write_text(json.dumps(table, indent=2) + "\n")
    figures = plots.draw_all(summary, directory)
    (directory / "report.md").write_text(report_text(summary, figures, table))


def load_summary(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "summary.json").read_text())
