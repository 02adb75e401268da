"""`solve`: answer one question the compute-optimal way, from a strategy table.

    table = json.load(open("study/strategy_table.json"))   # or a config's strategy table
    result = ttc_jax.solve("What is 3 + 4?", 16, policy, prm, table)
    result.answer, result.strategy, result.difficulty_bin, result.accounting

The question's difficulty is predicted first: the PRM's mean final score over a few samples
(the table's ``difficulty.samples``), binned by the table's score edges (bin 1 = easiest).
Then the table's strategy for that bin and the budget answers it. The estimate's compute is
charged: the accounting adds both.

A table is a dict: ``{"difficulty": {"samples": d, "edges": [...]}, "budgets": [...],
"table": {bin: {budget: label}}, "search": {shared search settings}}`` (the format of a
study's ``strategy_table.json``; labels as in `ttc_jax.study.specs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ml_collections

from ttc_jax.lm import LanguageModel
from ttc_jax.math.datasets import Problem
from ttc_jax.prm import PRM
from ttc_jax.search import run
from ttc_jax.search.results import Accounting
from ttc_jax.study.analysis import bin_of
from ttc_jax.study.config import study_config
from ttc_jax.study.difficulty import mean_final_score
from ttc_jax.study.specs import cell, check_labels, configured


@dataclasses.dataclass(frozen=True)
class SolveResult:
    answer: str | None
    correct: bool | None
    strategy: str
    budget: int
    difficulty_score: float  # the PRM's mean final score over the estimate's samples
    difficulty_bin: int
    accounting: Accounting  # the estimate and the strategy together


def check_table(table: Mapping) -> Mapping:
    """``table`` if it has the parts `solve` reads; otherwise a ValueError naming the part."""
    for part in ("difficulty", "budgets", "table"):
        if part not in table:
            raise ValueError(f"the strategy table lacks {part!r}")
    if "samples" not in table["difficulty"] or "edges" not in table["difficulty"]:
        raise ValueError("the strategy table's difficulty needs 'samples' and 'edges'")
    labels = [label for per in table["table"].values() for label in per.values()]
    check_labels(labels)
    return table


def _base(table: Mapping) -> ml_collections.ConfigDict:
    base = ml_collections.ConfigDict(study_config().search.to_dict())
    for key, value in (table.get("search") or {}).items():
        if key == "prompt":
            base.prompt.update(value)
        elif key in base:
            base[key] = value
    return base


def _add(a: Accounting, b: Accounting) -> Accounting:
    return Accounting(
        **{f.name: getattr(a, f.name) + getattr(b, f.name) for f in dataclasses.fields(a)}
    )


def solve(
    question: str | Problem,
    budget: int,
    policy: LanguageModel,
    prm: PRM,
    table: Mapping,
    seed: int = 0,
    revision: LanguageModel | None = None,
    revision_verifier: PRM | None = None,
) -> SolveResult:
    """Answers ``question`` at ``budget`` generations with the table's strategy for its
    predicted difficulty (see the module docstring). ``revision`` and ``revision_verifier``
    are needed when the table picks revisions."""
    check_table(table)
    problem = question if isinstance(question, Problem) else Problem("question", question, "")
    budgets = sorted(int(b) for b in table["budgets"])
    fitting = [b for b in budgets if b <= budget]
    if not fitting:
        raise ValueError(f"budget {budget} is below the table's smallest budget {budgets[0]}")
    base = _base(table)
    samples = int(table["difficulty"]["samples"])
    estimate = configured("best_of_n", base)
    [probe] = run(estimate, policy, prm, [problem], samples, seed)
    score = mean_final_score([c.score for c in probe.candidates])
    bin_ = bin_of(score, table["difficulty"]["edges"])
    per_bin = table["table"][str(bin_)]
    used = max(b for b in fitting if str(b) in per_bin)
    label = per_bin[str(used)]
    chosen = cell(label, used, base)
    lm, verifier = policy, prm
    if chosen.uses_revision_model:
        if revision is None or revision_verifier is None:
            raise ValueError(f"the table picks {label}, which needs a revision model and verifier")
        lm, verifier = revision, revision_verifier
    [result] = run(chosen.config, lm, verifier, [problem], chosen.search_budget, seed)
    return SolveResult(
        answer=result.answer,
        correct=result.correct,
        strategy=label,
        budget=used,
        difficulty_score=score,
        difficulty_bin=bin_,
        accounting=_add(probe.accounting, result.accounting),
    )
