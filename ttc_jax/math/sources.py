"""MATH problem sources for studies (`ttc_jax.problem_sources`): ``math500`` (the shipped
MATH-500 test split) and ``jsonl`` (any JSONL of MATH-style problems, ``data.path``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ttc_jax.math.datasets import load_jsonl, load_math500
from ttc_jax.problem_sources import ProblemSource, register


def _check_jsonl(data) -> None:
    if not Path(data.path).expanduser().is_file():
        raise ValueError(f"data.path {data.path!r} is not a file (data.source is 'jsonl')")


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


register(ProblemSource("math500", load=lambda data: load_math500()))
register(
    ProblemSource(
        "jsonl",
        load=lambda data: load_jsonl(Path(data.path).expanduser()),
        check=_check_jsonl,
        identity=lambda data: {"data.path": data.path, "data.digest": _file_digest(data.path)},
    )
)
