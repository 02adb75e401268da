"""The engine's GPU goals, checked against `ttc-bench decode` reports.

- Prompt 256, N = 16, 64 and 256: at least 70% of the memory-bandwidth roofline, and more
  tokens/s than the plain broadcast-cache loop.
- Prompt 1536, N = 256: at least twice the tokens/s of the plain loop.

A report is the JSON that ``ttc-bench decode --json`` writes. The check reads the cells it
finds, says which goal each serves and whether it is met, and names what is missing. A cell run
without the plain loop (``--skip-plain-loop``) borrows the plain loop's tokens/s from the same
cell of the first other report in the call with the same device, shape, dtype and new-token
count; the output names that report. The goals are for an H100 or H200; the device each report
ran on is shown beside it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

ROOFLINE_GOAL = 0.70  # prompt 256
ROOFLINE_CELLS = ((16, 256), (64, 256), (256, 256))  # also where ours must beat the plain loop
PLAIN_LOOP_GOAL = 2.0  # prompt 1536, N = 256
PLAIN_LOOP_CELL = (256, 1536)
SETUP_FIELDS = ("device", "shape", "dtype")  # plus each cell's new_tokens


@dataclasses.dataclass(frozen=True)
class GoalCheck:
    source: str  # the report's attention implementation, device and file
    samples: int
    prompt_len: int
    goal: str
    measured: float | None  # roofline fraction, or ratio to the plain loop
    met: bool | None  # None: the reports lack what the goal needs
    baseline_source: str | None = None  # the other report the plain loop came from, if any


def _cells(report: dict) -> dict[tuple[int, int], dict]:
    return {(c["samples"], c["prompt_len"]): c for c in report["cells"]}


def _plain_loop_ratio(
    report: dict, key: tuple[int, int], reports: list[tuple[str, dict]]
) -> tuple[float | None, str | None]:
    """Ours / plain-loop tokens/s for one cell of ``report``, and the name of the report in
    ``reports`` the plain loop was borrowed from (None when ``report`` measured it itself)."""
    cell = _cells(report)[key]
    if cell.get("plain_loop_ratio") is not None:
        return cell["plain_loop_ratio"], None
    setup = [report.get(f) for f in SETUP_FIELDS] + [cell.get("new_tokens")]
    if None in setup:
        return None, None
    for other_name, other in reports:  # its own cell has no plain loop, so it never matches
        other_cell = _cells(other).get(key)
        if other_cell is None:
            continue
        if [other.get(f) for f in SETUP_FIELDS] + [other_cell.get("new_tokens")] != setup:
            continue
        plain = (other_cell.get("plain_loop") or {}).get("tokens_per_s")
        if plain:
            return cell["ours"]["tokens_per_s"] / plain, other_name
    return None, None


def check_goals(reports: Iterable[tuple[str, dict]]) -> list[GoalCheck]:
    """``reports``: (name, report dict) pairs; one check per goal cell found in each."""
    reports = list(reports)
    checks = []
    for name, report in reports:
        source = f"{report.get('attention', 'xla')}, {report.get('device', '?')} ({name})"
        cells = _cells(report)
        for key in ROOFLINE_CELLS:
            if key in cells:
                fraction = cells[key]["ours"]["roofline_fraction"]
                checks.append(
                    GoalCheck(source, *key, ">= 70% roofline", fraction, fraction >= ROOFLINE_GOAL)
                )
                ratio, borrowed = _plain_loop_ratio(report, key, reports)
                met = None if ratio is None else ratio > 1.0
                checks.append(GoalCheck(source, *key, "> plain loop", ratio, met, borrowed))
        if PLAIN_LOOP_CELL in cells:
            ratio, borrowed = _plain_loop_ratio(report, PLAIN_LOOP_CELL, reports)
            met = None if ratio is None else ratio >= PLAIN_LOOP_GOAL
            checks.append(
                GoalCheck(source, *PLAIN_LOOP_CELL, ">= 2x plain loop", ratio, met, borrowed)
            )
    return checks


def load_reports(paths: Iterable[Path]) -> list[tuple[str, dict]]:
    return [(path.name, json.loads(path.read_text())) for path in paths]


def format_checks(checks: list[GoalCheck]) -> str:
    rows = ["| ours | N | prompt | goal | measured | met |", "|---|---|---|---|---|---|"]
    for c in checks:
        if c.measured is None:
            measured = "-"
        elif c.goal.endswith("roofline"):
            measured = f"{100 * c.measured:.1f}%"
        else:
            measured = f"{c.measured:.2f}x"
        if c.baseline_source is not None:
            measured += f" (plain loop from {c.baseline_source})"
        met = {True: "yes", False: "NO", None: "not measured"}[c.met]
        cells = (c.source, c.samples, c.prompt_len, c.goal, measured, met)
        rows.append("| " + " | ".join(str(x) for x in cells) + " |")
    if not checks:
        rows.append("| (no goal cells in these reports) | | | | | |")
    return "\n".join(rows)
