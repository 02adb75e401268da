"""Where a study's questions come from: a small registry of problem sources, so that the study
(`ttc_jax.study`) reads problems without importing any task.

A source is a name (the config's ``data.source``), a function that loads the problems from the
config's ``data`` section and one that checks that section before anything runs. The built-in
sources register themselves in their own modules (MATH-500 and JSONL files in
`ttc_jax.math.sources`, the embedded world in `ttc_jax.embedded.sources`), which are imported
when their name is first asked for. Another task registers its own:

    from ttc_jax.problem_sources import ProblemSource, register
    register(ProblemSource("my_task", load=my_loader, check=my_check))
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import ml_collections

from ttc_jax.math.datasets import Problem


@dataclasses.dataclass(frozen=True)
class ProblemSource:
    name: str
    # The problems a config's ``data`` section asks for, in a fixed order.
    load: Callable[[ml_collections.ConfigDict], list[Problem]]
    # Raises ValueError naming the field when ``data`` cannot work (before any compute).
    check: Callable[[ml_collections.ConfigDict], None] = lambda data: None
    # The ``data`` fields that fix which problems load (recorded with a study's rows).
    identity: Callable[[ml_collections.ConfigDict], dict] = lambda data: {}


_SOURCES: dict[str, ProblemSource] = {}
# Built-in sources and the modules that register them, imported on first use.
_BUILT_IN = {
    "embedded": "ttc_jax.embedded.sources",
    "math500": "ttc_jax.math.sources",
    "jsonl": "ttc_jax.math.sources",
}


def register(source: ProblemSource) -> ProblemSource:
    """Adds ``source`` (replacing one of the same name)."""
    _SOURCES[source.name] = source
    return source


def names() -> list[str]:
    return sorted(set(_SOURCES) | set(_BUILT_IN))


def get(name: str) -> ProblemSource:
    """The source called ``name``; an unknown name is an error listing the known ones."""
    if name not in _SOURCES and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    if name not in _SOURCES:
        raise ValueError(f"data.source {name!r} is not one of {', '.join(names())}")
    return _SOURCES[name]
