"""Datasets: the shipped MATH-500 file, the Hendrycks tree loader, field-mapped JSONL, errors."""

import hashlib
import json
from collections import Counter

import pytest

from ttc_jax.math import DatasetError, Problem, load_hendrycks_tree, load_jsonl, load_math500
from ttc_jax.math.datasets import MATH500_SHA256, math500_path, parse_level


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _write_tree(root, files):
    """files: {"test/algebra/1.json": {...}}; returns root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def _math_file(level="Level 2", subject="Algebra", answer="7"):
    return {
        "problem": "What is $3+4$?",
        "level": level,
        "type": subject,
        "solution": f"We add: $3+4=\\boxed{{{answer}}}$.",
    }


def test_shipped_math500_is_the_original_file():
    assert hashlib.sha256(math500_path().read_bytes()).hexdigest() == MATH500_SHA256


def test_load_math500_matches_the_raw_rows():
    problems = load_math500()
    raw_rows = [json.loads(line) for line in math500_path().read_text().splitlines()]
    assert len(problems) == 500
    assert len({problem.id for problem in problems}) == 500
    for problem, row in zip(problems, raw_rows, strict=True):
        assert (problem.id, problem.answer, problem.level) == (
            row["unique_id"],
            row["answer"],
            row["level"],
        )
        assert (problem.problem, problem.solution, problem.subject) == (
            row["problem"],
            row["solution"],
            row["subject"],
        )
    assert Counter(problem.level for problem in problems) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    assert len({problem.subject for problem in problems}) == 7


def test_load_jsonl_with_a_field_mapping(tmp_path):
    path = _write_jsonl(
        tmp_path / "gsm.jsonl",
        [
            {"question": "1+1?", "final": "2", "key": "a"},
            {"question": "2+2?", "final": 4, "key": "b"},
        ],
    )
    problems = load_jsonl(path, fields={"problem": "question", "answer": "final", "id": "key"})
    assert problems == [
        Problem(id="a", problem="1+1?", answer="2"),
        Problem(id="b", problem="2+2?", answer="4"),
    ]


def test_load_jsonl_defaults_answer_from_solution_and_id_from_line(tmp_path):
    path = _write_jsonl(
        tmp_path / "p.jsonl", [{"problem": "q", "solution": "so \\boxed{\\frac{1}{2}}", "level": 3}]
    )
    (problem,) = load_jsonl(path)
    assert (problem.id, problem.answer, problem.level) == ("1", "\\frac{1}{2}", 3)


@pytest.mark.parametrize(
    ("lines", "fields", "message"),
    [
        (['{"problem": "q", "answer": "1"}', "{not json"], None, r"p\.jsonl:2: invalid JSON"),
        (['["a list"]'], None, r"p\.jsonl:1: expected a JSON object"),
        (['{"answer": "1"}'], None, r"p\.jsonl:1: missing field 'problem'"),
        (['{"q": "x", "answer": "1"}'], {"problem": "q", "id": "key"}, r":1: missing field 'key'"),
        (['{"problem": "q", "answer": "1", "level": 7}'], None, r":1: bad level 7"),
        (['{"problem": "q", "answer": "1", "level": "hard"}'], None, r":1: bad level 'hard'"),
        (['{"problem": "q", "solution": "no box"}'], None, r":1: no 'answer' field and no"),
        (['{"problem": {"a": 1}, "answer": "1"}'], None, r":1: field 'problem' must be text"),
        (
            ['{"problem": "q", "answer": "1", "unique_id": "x"}'] * 2,
            None,
            r"duplicate id 'x'",
        ),
    ],
)
def test_load_jsonl_errors_name_file_and_line(tmp_path, lines, fields, message):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message) as raised:
        load_jsonl(path, fields=fields)
    assert str(path) in str(raised.value)


def test_load_jsonl_rejects_unknown_mapping_fields(tmp_path):
    with pytest.raises(ValueError, match="unknown Problem fields"):
        load_jsonl(tmp_path / "p.jsonl", fields={"question": "q"})


@pytest.mark.parametrize(
    ("raw", "level"), [(3, 3), ("4", 4), ("Level 5", 5), (" Level 1 ", 1), ("Level ?", None)]
)
def test_parse_level(raw, level):
    assert parse_level(raw) == level


@pytest.mark.parametrize("raw", [0, 6, "Level 6", "Level", "easy", 2.5, True, None])
def test_parse_level_rejects(raw):
    with pytest.raises(ValueError, match="bad level"):
        parse_level(raw)


def test_problem_rejects_bad_level():
    with pytest.raises(ValueError, match="level must be"):
        Problem(id="x", problem="q", answer="1", level=6)


def test_load_hendrycks_tree(tmp_path):
    root = _write_tree(
        tmp_path,
        {
            "test/algebra/10.json": _math_file(answer="7"),
            "test/algebra/9.json": _math_file(level="Level 4", answer="\\frac{1}{2}"),
            "test/counting_and_probability/3.json": _math_file(
                level="Level 1", subject="Counting & Probability", answer="\\{1, 2\\}"
            ),
            "test/algebra/notes.txt": "ignored",
            "train/geometry/1.json": _math_file(level="Level ?", subject="Geometry"),
        },
    )
    test_split = load_hendrycks_tree(root, "test")
    assert [problem.id for problem in test_split] == [
        "test/algebra/9.json",
        "test/algebra/10.json",
        "test/counting_and_probability/3.json",
    ]
    assert [problem.answer for problem in test_split] == ["\\frac{1}{2}", "7", "\\{1, 2\\}"]
    assert [problem.level for problem in test_split] == [4, 2, 1]
    assert test_split[2].subject == "Counting & Probability"
    (train_problem,) = load_hendrycks_tree(root, "train")
    assert (train_problem.subject, train_problem.level) == ("Geometry", None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{broken", "invalid JSON"),
        ({**_math_file(), "level": "Level 9"}, "bad level 'Level 9'"),
        ({k: v for k, v in _math_file().items() if k != "type"}, "missing field 'type'"),
        ({**_math_file(), "solution": "no box"}, "no 'answer' field and no"),
    ],
)
def test_load_hendrycks_tree_errors_name_the_file(tmp_path, content, message):
    _write_tree(tmp_path, {"test/algebra/1.json": content})
    with pytest.raises(DatasetError, match=message) as raised:
        load_hendrycks_tree(tmp_path, "test")
    assert str(tmp_path / "test" / "algebra" / "1.json") in str(raised.value)


def test_load_hendrycks_tree_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="no such directory"):
        load_hendrycks_tree(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_hendrycks_tree(tmp_path, "validation")
