"""Accuracy by MATH difficulty level and by subject, from graded records.

A record is a `(Problem, correct)` pair or a mapping with "level", "subject" and "correct"
keys (the form results rows take on disk). The report is a plain dict, ready for JSON, and
`format_markdown` renders it as the tables a results page shows.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from ttc_jax.math.datasets import Problem

UNKNOWN = "unknown"

GradedRecord = tuple[Problem, bool] | Mapping[str, Any]


def _level_subject_correct(record: GradedRecord) -> tuple[Any, str, bool]:
    """(level, subject, correct) of one record."""
    if isinstance(record, tuple):
        problem, correct = record
        return problem.level, problem.subject, bool(correct)
    try:
        return record.get("level"), record.get("subject", ""), bool(record["correct"])
    except (AttributeError, KeyError):
        raise ValueError(f"record needs a 'correct' field: {record!r}") from None


def _summary(correct: int, total: int) -> dict[str, float | int]:
    return {"correct": correct, "total": total, "accuracy": correct / total if total else 0.0}


def _tally(pairs: Iterable[tuple[str, bool]]) -> dict[str, dict[str, float | int]]:
    counts: dict[str, list[int]] = {}
    for key, correct in pairs:
        count = counts.setdefault(key, [0, 0])
        count[0] += correct
        count[1] += 1
    return {key: _summary(*counts[key]) for key in sorted(counts)}


def accuracy_report(records: Iterable[GradedRecord]) -> dict[str, Any]:
    """{"overall": {...}, "by_level": {"1": {...}, ...}, "by_subject": {"Algebra": {...}}}.

    Each entry holds correct, total and accuracy. Levels are string keys (JSON objects have
    no integer keys); records without a level or subject are counted under "unknown".
    """
    rows = [_level_subject_correct(record) for record in records]
    by_level = _tally((str(level) if level is not None else UNKNOWN, ok) for level, _, ok in rows)
    by_subject = _tally((subject or UNKNOWN, ok) for _, subject, ok in rows)
    overall = _summary(sum(ok for _, _, ok in rows), len(rows))
    return {"overall": overall, "by_level": by_level, "by_subject": by_subject}


def _table(title: str, entries: Mapping[str, Mapping[str, float | int]]) -> list[str]:
    lines = [f"| {title} | correct | total | accuracy |", "| --- | ---: | ---: | ---: |"]
    for name, entry in entries.items():
        row = f"| {name} | {entry['correct']} | {entry['total']} | {entry['accuracy']:.1%} |"
        lines.append(row)
    return lines


def format_markdown(report: Mapping[str, Any]) -> str:
    """Two markdown tables (by level, by subject), each ending with the overall row."""
    overall = {"all": report["overall"]}
    level_table = _table("level", {**report["by_level"], **overall})
    subject_table = _table("subject", {**report["by_subject"], **overall})
    return "\n".join([*level_table, "", *subject_table]) + "\n"
