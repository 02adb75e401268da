"""MATH-style problems and their loaders: the shipped MATH-500 split, the original Hendrycks
MATH directory tree, and any JSONL file through a field mapping.

Every loader returns a list of `Problem`s and fails with a `DatasetError` that names the file
(and the line, for JSONL) on a malformed row, a missing field or a bad difficulty level.
"""

import dataclasses
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ttc_jax.math.grading import extract_answer

MATH500_RESOURCE = "data/math500_test.jsonl"
MATH500_SHA256 = "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"
# Problem field -> key in the source rows; MATH-500 and PRM800K-style files use these names.
DEFAULT_FIELDS: Mapping[str, str] = {
    "id": "unique_id",
    "problem": "problem",
    "answer": "answer",
    "solution": "solution",
    "subject": "subject",
    "level": "level",
}
_SPLITS = ("train", "test")


class DatasetError(ValueError):
    """A data file that cannot be read as problems; the message starts with "path[:line]"."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One question with its gold answer; `level` is MATH's difficulty, 1 (easy) to 5."""

    id: str
    problem: str
    answer: str
    solution: str = ""
    subject: str = ""
    level: int | None = None

    def __post_init__(self) -> None:
        if self.level is not None and (type(self.level) is not int or not 1 <= self.level <= 5):
            raise ValueError(f"level must be an int from 1 to 5 or None, got {self.level!r}")


def parse_level(raw: Any) -> int | None:
    """Reads 3, "3" or "Level 3"; "Level ?" (a few Hendrycks train problems) is unknown (None).

    Raises ValueError for anything else.
    """
    text = raw.strip() if isinstance(raw, str) else raw
    if isinstance(text, str):
        text = text.removeprefix("Level").strip()
        if text == "?":
            return None
        if text.isdigit():
            text = int(text)
    if type(text) is not int or not 1 <= text <= 5:
        raise ValueError(f"bad level {raw!r}: expected 1-5 or 'Level 1'-'Level 5'")
    return text


def _problem_from_row(
    row: Any, fields: Mapping[str, str], required: set[str], where: str, default_id: str
) -> Problem:
    """Builds a Problem from one source row; `where` prefixes every error message."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    values: dict[str, Any] = {}
    for field, key in fields.items():
        if key in row:
            values[field] = row[key]
        elif field in required:
            raise DatasetError(f"{where}: missing field {key!r} (for Problem.{field})")
    for field in ("id", "problem", "answer", "solution", "subject"):
        if field in values and not isinstance(values[field], str | int):
            raise DatasetError(f"{where}: field {fields[field]!r} must be text")
    if "answer" not in values:
        values["answer"] = extract_answer(values.get("solution", ""))
        if values["answer"] is None:
            raise DatasetError(f"{where}: no {fields['answer']!r} field and no \\boxed{{}} answer")
    try:
        level = parse_level(values["level"]) if "level" in values else None
    except ValueError as error:
        raise DatasetError(f"{where}: {error}") from None
    return Problem(
        id=str(values.get("id", default_id)),
        problem=str(values["problem"]),
        answer=str(values["answer"]),
        solution=str(values.get("solution", "")),
        subject=str(values.get("subject", "")),
        level=level,
    )


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{line_number}: invalid JSON ({error.msg})") from None


def load_jsonl(path: str | Path, fields: Mapping[str, str] | None = None) -> list[Problem]:
    """Problems from a JSONL file, one JSON object a line.

    `fields` maps Problem fields to the file's keys, e.g. {"problem": "question"}; unmapped
    fields use DEFAULT_FIELDS. Only "problem" is required, plus any field mapped here; a missing
    answer is taken from the solution's last \\boxed{}, a missing id is the line number.
    """
    path = Path(path)
    unknown = set(fields or {}) - set(DEFAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown Problem fields in mapping: {sorted(unknown)}")
    merged_fields = {**DEFAULT_FIELDS, **(fields or {})}
    required = {"problem", *(fields or {})}
    problems = [
        _problem_from_row(row, merged_fields, required, f"{path}:{line_number}", str(line_number))
        for line_number, row in _jsonl_rows(path)
    ]
    seen_ids: set[str] = set()
    for problem in problems:
        if problem.id in seen_ids:
            raise DatasetError(f"{path}: duplicate id {problem.id!r}")
        seen_ids.add(problem.id)
    return problems


def math500_path() -> Path:
    """The MATH-500 test split shipped with this package (Lightman et al.'s 500 problems)."""
    return Path(str(resources.files("ttc_jax.math").joinpath(MATH500_RESOURCE)))


def load_math500() -> list[Problem]:
    """The 500 MATH test problems with ids like "test/precalculus/807.json"."""
    return load_jsonl(math500_path())


def _numbered_json_files(folder: Path) -> list[Path]:
    """The folder's `<n>.json` files in numeric order, so ids come out in a stable order."""
    files = [path for path in folder.glob("*.json") if path.stem.isdigit()]
    return sorted(files, key=lambda path: int(path.stem))


def load_hendrycks_tree(root: str | Path, split: str = "test") -> list[Problem]:
    """Problems from the original MATH release: `<root>/<split>/<subject>/<n>.json`.

    Each file holds "problem", "solution", "level" ("Level 3") and "type" (the subject); the
    answer is the solution's last \\boxed{}. Ids follow MATH-500's form: "test/algebra/12.json".
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: no such directory (expected <root>/{split}/<subject>/)")
    fields = {**DEFAULT_FIELDS, "subject": "type"}
    required = {"problem", "solution", "subject", "level"}
    problems = []
    for subject_dir in sorted(path for path in split_dir.iterdir() if path.is_dir()):
        for path in _numbered_json_files(subject_dir):
            try:
                row = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}: invalid JSON ({error.msg})") from None
            item_id = f"{split}/{subject_dir.name}/{path.name}"
            problems.append(_problem_from_row(row, fields, required, str(path), item_id))
    if not problems:
        raise DatasetError(f"{split_dir}: no <subject>/<n>.json files")
    return problems
