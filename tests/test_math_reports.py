"""Reports: accuracy by level and subject from graded records, and their markdown tables."""

import json

import pytest

from ttc_jax.math import Problem
from ttc_jax.math.reports import accuracy_report, format_markdown


def _problem(index: int, level: int | None, subject: str) -> Problem:
    return Problem(id=str(index), problem="q", answer="1", subject=subject, level=level)


RECORDS = [
    (_problem(0, 1, "Algebra"), True),
    (_problem(1, 1, "Algebra"), False),
    (_problem(2, 5, "Geometry"), True),
    (_problem(3, None, ""), True),
]


def test_accuracy_report_groups_by_level_and_subject():
    report = accuracy_report(RECORDS)
    assert report["overall"] == {"correct": 3, "total": 4, "accuracy": 0.75}
    assert report["by_level"] == {
        "1": {"correct": 1, "total": 2, "accuracy": 0.5},
        "5": {"correct": 1, "total": 1, "accuracy": 1.0},
        "unknown": {"correct": 1, "total": 1, "accuracy": 1.0},
    }
    assert report["by_subject"]["Algebra"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert report["by_subject"]["unknown"]["total"] == 1
    assert json.loads(json.dumps(report)) == report


def test_dict_records_give_the_same_report():
    as_dicts = [
        {"level": problem.level, "subject": problem.subject, "correct": correct}
        for problem, correct in RECORDS
    ]
    assert accuracy_report(as_dicts) == accuracy_report(RECORDS)


def test_record_without_correct_is_an_error():
    with pytest.raises(ValueError, match="'correct'"):
        accuracy_report([{"level": 1, "subject": "Algebra"}])


def test_empty_records():
    assert accuracy_report([])["overall"] == {"correct": 0, "total": 0, "accuracy": 0.0}


def test_format_markdown():
    table = format_markdown(accuracy_report(RECORDS))
    lines = table.splitlines()
    assert lines[0] == "| level | correct | total | accuracy |"
    assert "| 1 | 1 | 2 | 50.0% |" in lines
    assert "| Geometry | 1 | 1 | 100.0% |" in lines
    assert lines.count("| all | 3 | 4 | 75.0% |") == 2
