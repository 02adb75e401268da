"""`solve`: answer one question the compute-optimal way, from a strategy table.

    table = json.load(open("study/strategy_table.json"))   # or a config's strategy table
    result = ttc_jax.solve("What is 3 + 4?", 16, policy, prm, table)
    result.answer, result.strategy, result.difficulty_bin, result.accounting

The question's difficulty is predicted first: the PRM's mean final score over a few samples
(the table's ``difficulty.samples``), binned by the table's score edges (bin 1 = easiest).
Then the table's strategy for that bin, at the largest of its budgets within the request,
answers it with samples of its own. The estimate's compute is charged: the accounting holds
both, apart and together.

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
from ttc_jax.search.configs import check_strategy
from ttc_jax.search.results import Accounting
from ttc_jax.study.analysis import bin_of
from ttc_jax.study.config import study_config
from ttc_jax.study.difficulty import mean_final_score
from ttc_jax.study.specs import cell, check_labels, configured, derived_seed


@dataclasses.dataclass(frozen=True)
class SolveResult:
    answer: str | None
    correct: bool | None
    strategy: str
    budget: int  # the table's budget that was spent (the largest within the request)
    requested_budget: int
    difficulty_score: float  # the PRM's mean final score over the estimate's samples
    difficulty_bin: int
    estimate_accounting: Accounting  # the difficulty estimate's samples and scores
    strategy_accounting: Accounting  # the strategy's own, freshly drawn samples
    accounting: Accounting  # both together: what answering the question cost


def check_table(table: Mapping) -> Mapping:
    """``table`` if `solve` can use it for every bin; otherwise one ValueError naming the
    first problem: its parts, the difficulty's samples and edges, a row for every bin the
    edges make (and none past them), each row's budgets (integers >= 1) and labels (known,
    and fitting their budget)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"a strategy table is a mapping, got {type(table).__name__}")
    for part in ("difficulty", "budgets", "table"):
        if part not in table:
            raise ValueError(f"the strategy table lacks {part!r}")
    difficulty = table["difficulty"]
    if not isinstance(difficulty, Mapping) or not {"samples", "edges"} <= set(difficulty):
        raise ValueError("the strategy table's difficulty needs 'samples' and 'edges'")
    samples, edges = difficulty["samples"], difficulty["edges"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"the strategy table's difficulty.samples must be >= 1, got {samples!r}")
    if not isinstance(edges, list | tuple) or not all(
        isinstance(e, int | float) and not isinstance(e, bool) for e in edges
    ):
        raise ValueError(f"the strategy table's difficulty.edges must be numbers, got {edges!r}")
    if list(edges) != sorted(edges, reverse=True):
        raise ValueError(
            f"the strategy table's difficulty.edges must not increase (bin 1 = easiest = the "
            f"highest scores), got {list(edges)}"
        )
    rows = table["table"]
    bins = [str(b) for b in range(1, len(edges) + 2)]
    if not isinstance(rows, Mapping):
        raise ValueError("the strategy table's 'table' must map bins to {budget: label}")
    missing = [b for b in bins if b not in rows]
    extra = sorted(set(map(str, rows)) - set(bins))
    if missing or extra:
        raise ValueError(
            f"the strategy table's {len(edges)} edges make bins {', '.join(bins)}; its table "
            + (f"lacks bin(s) {', '.join(missing)}" if missing else "")
            + (" and " if missing and extra else "")
            + (f"has bin(s) {', '.join(extra)} beyond them" if extra else "")
        )
    base = _base(table)
    for b in bins:
        row = rows[b]
        if not isinstance(row, Mapping) or not row:
            raise ValueError(f"the strategy table's bin {b} has no budgets")
        for budget, label in row.items():
            if not str(budget).isdigit() or int(budget) < 1:
                raise ValueError(f"the strategy table's bin {b} has budget {budget!r}, not >= 1")
            check_labels([label])
            found = cell(label, int(budget), base)
            if found is None:
                raise ValueError(
                    f"the strategy table's bin {b} picks {label} at budget {budget}, "
                    "which does not fit it"
                )
            try:
                check_strategy(found.config, found.search_budget, has_prm=True)
            except ValueError as e:
                raise ValueError(f"search: {e} ({label} at budget {budget})") from e
    return table


def needs_revision_model(table: Mapping) -> bool:
    """Whether any row of the table picks revisions (a revision model and its verifier)."""
    return any(
        label.startswith("revisions_s") for row in table["table"].values() for label in row.values()
    )


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


def table_budget(table: Mapping, difficulty_bin: int, budget: int) -> int:
    """The budget of bin ``difficulty_bin``'s row that `solve` spends at ``budget``: the
    largest within it (a request between two budgets is rounded down, and says so in
    `SolveResult.budget`)."""
    row = [int(b) for b in table["table"][str(difficulty_bin)]]
    fitting = [b for b in row if b <= budget]
    if not fitting:
        raise ValueError(
            f"budget {budget} is below the table's smallest budget {min(row)} for difficulty "
            f"bin {difficulty_bin}"
        )
    return max(fitting)


def _problem(question: str | Problem) -> Problem:
    if isinstance(question, Problem):
        return question
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"the question must be a non-empty string, got {question!r}")
    return Problem("question", question, "")


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
    are needed when the table picks revisions.

    The estimate draws its samples with ``seed``; the strategy draws fresh ones with a seed
    derived from it, so none of the estimate's samples is reused or charged twice: the
    accounting holds the estimate's and the strategy's compute, apart and together."""
    check_table(table)
    problem = _problem(question)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (generations), got {budget!r}")
    base = _base(table)
    samples = int(table["difficulty"]["samples"])
    estimate = configured("best_of_n", base)
    [probe] = run(estimate, policy, prm, [problem], samples, seed)
    score = mean_final_score([c.score for c in probe.candidates])
    bin_ = bin_of(score, table["difficulty"]["edges"])
    used = table_budget(table, bin_, budget)
    label = table["table"][str(bin_)][str(used)]
    chosen = cell(label, used, base)
    lm, verifier = policy, prm
    if chosen.uses_revision_model:
        if revision is None or revision_verifier is None:
            raise ValueError(f"the table picks {label}, which needs a revision model and verifier")
        lm, verifier = revision, revision_verifier
    strategy_seed = derived_seed("solve strategy", seed)
    [result] = run(chosen.config, lm, verifier, [problem], chosen.search_budget, strategy_seed)
    return SolveResult(
        answer=result.answer,
        correct=result.correct,
        strategy=label,
        budget=used,
        requested_budget=budget,
        difficulty_score=score,
        difficulty_bin=bin_,
        estimate_accounting=probe.accounting,
        strategy_accounting=result.accounting,
        accounting=_add(probe.accounting, result.accounting),
    )
