"""The engine's GPU goals, checked against `ttc-bench decode` reports.

- Prompt 256, N = 16, 64 and 256: at least 70% of the memory-bandwidth roofline.
- Prompt 1536, N = 256: at least twice the tokens/s of the plain broadcast-cache loop.

A report is the JSON that ``ttc-bench decode --json`` writes. The check reads the cells it
finds, says which goal each serves and whether it is met, and names what is missing. The goals
are for an H100 or H200; the device each report ran on is shown beside it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

ROOFLINE_GOAL = 0.70  # prompt 256
ROOFLINE_CELLS = ((16, 256), (64, 256), (256, 256))
PLAIN_LOOP_GOAL = 2.0  # prompt 1536, N = 256
PLAIN_LOOP_CELL = (256, 1536)


@dataclasses.dataclass(frozen=True)
class GoalCheck:
    source: str  # the report's attention implementation, device and file
    samples: int
    prompt_len: int
    goal: str
    measured: float | None  # roofline fraction, or ratio to the plain loop
    met: bool | None  # None: the report lacks what the goal needs


def check_goals(reports: Iterable[tuple[str, dict]]) -> list[GoalCheck]:
    """``reports``: (name, report dict) pairs; one check per goal cell found in each."""
    checks = []
    for name, report in reports:
        source = f"{report.get('attention', 'xla')}, {report.get('device', '?')} ({name})"
        cells = {(c["samples"], c["prompt_len"]): c for c in report["cells"]}
        for key in ROOFLINE_CELLS:
            if key in cells:
                fraction = cells[key]["ours"]["roofline_fraction"]
                checks.append(
                    GoalCheck(source, *key, ">= 70% roofline", fraction, fraction >= ROOFLINE_GOAL)
                )
        if PLAIN_LOOP_CELL in cells:
            ratio = cells[PLAIN_LOOP_CELL].get("plain_loop_ratio")
            met = None if ratio is None else ratio >= PLAIN_LOOP_GOAL
            checks.append(GoalCheck(source, *PLAIN_LOOP_CELL, ">= 2x plain loop", ratio, met))
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
        met = {True: "yes", False: "NO", None: "not measured"}[c.met]
        cells = (c.source, c.samples, c.prompt_len, c.goal, measured, met)
        rows.append("| " + " | ".join(str(x) for x in cells) + " |")
    if not checks:
        rows.append("| (no goal cells in these reports) | | | | | |")
    return "\n".join(rows)
