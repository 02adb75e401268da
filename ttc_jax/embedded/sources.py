"""The embedded world as a study's problem source (`ttc_jax.problem_sources`): ``embedded``,
``data.per_level`` fresh test questions of each of ``data.levels``, drawn with ``data.seed``."""

from __future__ import annotations

from ttc_jax.embedded.task import make_problems
from ttc_jax.problem_sources import ProblemSource, register


def _check(data) -> None:
    if data.per_level < 1 or not data.levels:
        raise ValueError("data.per_level must be >= 1 and data.levels non-empty")


register(
    ProblemSource(
        "embedded",
        load=lambda data: [
            p for level in data.levels for p in make_problems(data.per_level, level, data.seed)
        ],
        check=_check,
        identity=lambda data: {"data.seed": data.seed},
    )
)
