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


def findings(summary: dict) -> list[str]:
    """Plain statements, each marked "reproduces", "does not reproduce" or "partly"."""
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
        short = [(b, g) for b, g in gaps if g < -NEAR]
        verdict = "reproduces" if not short else "does not reproduce"
        detail = ", ".join(f"B={b}: {100 * g:+.1f} points" for b, g in gaps)
        out.append(
            f"Compute-optimal ({measure} bins) matches or beats best-of-N weighted at every "
            f"budget: {verdict} ({detail})."
        )
    curve = summary["compute_optimal"]["oracle"]
    pairs = []
    for b in budgets:
        if b * PAPER_FACTOR in budgets and _get(curve, b) is not None:
            target = _get(baseline, b * PAPER_FACTOR)
            if target is not None:
                pairs.append((b, _get(curve, b), target))
    reached = [b for b, mine, theirs in pairs if mine >= theirs - NEAR]
    if pairs:
        verdict = "reproduces" if reached else "does not reproduce"
        out.append(
            f"Compute-optimal (oracle bins) at budget B reaches best-of-N weighted at "
            f"{PAPER_FACTOR}B: {verdict} ("
            + ", ".join(f"B={b}: {_pct(m)} vs {_pct(t)}" for b, m, t in pairs)
            + ")."
        )
    out.extend(_beam_findings(summary))
    out.extend(_revision_findings(summary))
    out.extend(_exchange_findings(summary))
    return out


def _beam_findings(summary: dict) -> list[str]:
    budgets = summary["budgets"]
    by_bin = summary["accuracy_by_bin"]["oracle"]
    beam, base = by_bin.get("beam_msqrt"), by_bin.get(BASELINE)
    if not beam or not base:
        return []
    fitted = [b for b in budgets if _get(beam, b) and _get(base, b) and b > 1]
    if not fitted:
        return []
    low, high = fitted[0], fitted[-1]
    bins = sorted(_get(base, low), key=int)

    def diff(b, x):
        return _get(beam, b, x) - _get(base, b, x)

    overall = summary["accuracy"]
    low_gap = _get(overall, "beam_msqrt", low) - _get(overall, BASELINE, low)
    high_gap = _get(overall, "beam_msqrt", high) - _get(overall, BASELINE, high)
    shape = low_gap > 0 and high_gap < low_gap
    lines = [
        f"Beam search (M = sqrt N) beats best-of-N weighted at low budgets and falls behind at "
        f"high ones: {'reproduces' if shape else 'does not reproduce'} (B={low}: "
        f"{100 * low_gap:+.1f} points, B={high}: {100 * high_gap:+.1f} points).",
    ]
    easy = bins[0]
    hard = bins[1:-1] or bins[-1:]
    easy_worse = diff(high, easy) < 0
    hard_better = any(diff(b, x) > 0 for b in (low, high) for x in hard)
    lines.append(
        "On the easiest bin beam search over-optimises (worse than best-of-N) at high budget, "
        f"and wins on medium/hard bins: {_verdict(easy_worse, hard_better)} (bin {easy} at "
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
                compared.append(mine <= min(others) + NEAR if others else False)
        share = sum(compared) / len(compared) if compared else 0.0
        lines.append(
            "Lookahead is usually the worst search at equal generation budget: "
            f"{'reproduces' if share >= 0.5 else 'does not reproduce'} (worst or within "
            f"{100 * NEAR:.0f} point of worst in {sum(compared)} of {len(compared)} cells)."
        )
    return lines


def _verdict(first: bool, second: bool) -> str:
    if first and second:
        return "reproduces"
    return "partly reproduces" if first or second else "does not reproduce"


def _revision_findings(summary: dict) -> list[str]:
    best = summary.get("revision_ratio_by_bin") or {}
    if not best:
        return []
    budget = max(best, key=int)
    picks = best[budget]
    bins = sorted(picks, key=int)
    lengths = {x: int(picks[x].removeprefix("revisions_s")) for x in bins}
    full = int(budget)
    easy_sequential = lengths[bins[0]] == full
    harder_between = any(1 < lengths[x] < full for x in bins[1:])
    return [
        "Easy questions do best fully sequential and harder ones at an intermediate "
        f"sequential:parallel ratio: {_verdict(easy_sequential, harder_between)} (best "
        f"sequential length at budget {budget} by bin: "
        + ", ".join(f"bin {x}: {lengths[x]}" for x in bins)
        + ")."
    ]


def _exchange_findings(summary: dict) -> list[str]:
    data = summary.get("exchange")
    if not data:
        return ["FLOPs exchange: not run (no larger policy)."]
    lines = []
    for point in data["points"]:
        if point["budget"] is None:
            lines.append(
                f"FLOPs exchange at R={point['ratio']:g}: no budget within the matched "
                f"{point['multiplier']:.1f} samples."
            )
            continue
        bins = sorted(point["large_by_bin"], key=int)
        wins = [x for x in bins if point["small_by_bin"].get(x, 0) > point["large_by_bin"][x]]
        lines.append(
            f"FLOPs exchange at R={point['ratio']:g} (matched {point['multiplier']:.1f} "
            f"samples, budget {point['budget']}): the small model with test-time compute wins "
            f"on bins {', '.join(wins) or 'none'} of {', '.join(bins)} (overall "
            f"{_pct(point['small_overall'])} vs {_pct(point['large_overall'])} for the "
            f"{data['size_ratio']:.1f}x model)."
        )
    easy_low = data["points"][0]
    paper = (
        easy_low["budget"] is not None
        and easy_low["small_by_bin"].get(sorted(easy_low["large_by_bin"], key=int)[0], 0)
        > easy_low["large_by_bin"][sorted(easy_low["large_by_bin"], key=int)[0]]
    )
    lines.append(
        "Test-time compute beats the larger model on easy questions at low R: "
        f"{'reproduces' if paper else 'does not reproduce'} (see the lines above)."
    )
    return lines


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


def report_text(summary: dict, figures: list[str]) -> str:
    lines = [
        "# Compute-optimal test-time scaling: study report",
        "",
        f"{summary['questions']} questions; budgets {', '.join(map(str, summary['budgets']))} "
        "(generations per question); difficulty from "
        f"{summary['difficulty']['samples']} samples per question in "
        f"{summary['difficulty']['bins']} bins.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in findings(summary)],
        "",
        "## Accuracy by strategy and budget",
        "",
        *_table(summary, summary["labels"]),
        "",
        "## Compute-optimal table (oracle bins; bin 1 = easiest)",
        "",
    ]
    tables = summary["tables"]["oracle"]
    budgets = [b for b in summary["budgets"] if str(b) in tables]
    bins = sorted({x for t in tables.values() for x in t}, key=int)
    lines.append("| bin | " + " | ".join(f"B={b}" for b in budgets) + " |")
    lines.append("|---|" + "---|" * len(budgets))
    for x in bins:
        lines.append(f"| {x} | " + " | ".join(tables[str(b)].get(x, "") for b in budgets) + " |")
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
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
    (directory / "report.md").write_text(report_text(summary, figures))


def load_summary(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "summary.json").read_text())
