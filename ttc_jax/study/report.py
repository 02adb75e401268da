"""The study's outputs: ``summary.json``, ``strategy_table.json``, the figures and
``report.md``, whose findings say, with numbers, which of the paper's findings reproduce here
and which do not. Nothing is tuned to make a finding hold: each is read off the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ttc_jax.study import plots
from ttc_jax.study.findings import caveats, findings, pct


def _get(table: dict, *keys):
    for key in keys:
        if not isinstance(table, dict) or str(key) not in table:
            return None
        table = table[str(key)]
    return table


def _cell(value, interval) -> str:
    """An accuracy with its 95% interval: "52.0% [38.0, 66.0]"."""
    if value is None or interval is None or any(math.isnan(v) for v in interval):
        return pct(value)
    return f"{pct(value)} [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"


def _table(summary: dict, rows: list[str]) -> list[str]:
    budgets = summary["budgets"]
    lines = [
        "| strategy | " + " | ".join(f"B={b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for label in rows:
        per, bounds = (
            summary["accuracy"].get(label, {}),
            summary["accuracy_interval"].get(label, {}),
        )
        lines.append(
            f"| {label} | "
            + " | ".join(_cell(_get(per, b), _get(bounds, b)) for b in budgets)
            + " |"
        )
    for measure in ("oracle", "predicted", "predicted_charged"):
        per = summary["compute_optimal"].get(measure, {})
        bounds = summary["compute_optimal_interval"].get(measure, {})
        lines.append(
            f"| compute-optimal ({measure}) | "
            + " | ".join(_cell(_get(per, b), _get(bounds, b)) for b in budgets)
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
    boot = summary["bootstrap"]
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
        f"Each effect is in accuracy points with its paired {boot['level']:.0%} interval "
        f"(bootstrap over questions, {boot['replicates']} replicates stratified by "
        f"{boot['stratified_by']}; the compute-optimal curves repeat their cross-validated "
        "selection on every replicate). A finding reproduces when its interval lies on the "
        "paper's side of zero, does not when it lies on the other side, and is inconclusive "
        "when it holds zero.",
        "",
        *[f"- {line}" for line in findings(summary)],
        "",
        "## Accuracy by strategy and budget",
        "",
        f"Each with its {boot['level']:.0%} interval, in points.",
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
