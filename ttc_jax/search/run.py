"""`run`: one strategy at one budget over many problems, batched, with exact accounting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import ml_collections

from ttc_jax import program_cache
from ttc_jax.engine import Engine, default_engine
from ttc_jax.lm import LanguageModel
from ttc_jax.math.datasets import Problem
from ttc_jax.math.grading import is_equiv
from ttc_jax.prm import PRM
from ttc_jax.search.candidates import Outcome
from ttc_jax.search.configs import generations
from ttc_jax.search.parallel import parallel_search
from ttc_jax.search.prompting import build_prompter
from ttc_jax.search.results import BatchStats, SearchResult
from ttc_jax.search.revisions import revision_search
from ttc_jax.search.specs import strategy_spec
from ttc_jax.search.state import SearchState
from ttc_jax.search.tree import tree_search

# Sample rows (questions x budget) searched together by default: enough to fill a CPU's or a
# GPU's batch, few enough to bound the caches' memory.
DEFAULT_MAX_ROWS = 1024


def run(
    strategy: ml_collections.ConfigDict,
    lm: LanguageModel,
    prm: PRM | None,
    problems: Sequence[Problem],
    budget: int,
    seed: int = 0,
    *,
    engine: Engine | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    on_batch: Callable[[BatchStats], None] | None = None,
    grader: Callable[[str | None, str], bool] = is_equiv,
) -> list[SearchResult]:
    """Runs ``strategy`` (see `ttc_jax.search.configs.strategy_config`) at ``budget`` N on
    every problem; returns one `SearchResult` per problem, in order.

    Problems are searched together, ``max(1, max_rows // budget)`` at a time: tree searches
    (beam, lookahead, DVTS) as one pool, each problem taking the rows of one that has ended
    (`tree_search`), the others in batches of that many. A problem's result does not depend
    on which others share its batch or pool, nor on when it was admitted. ``prm`` may be
    None for majority voting; for revisions ``lm`` is the revision model and ``prm`` its
    verifier. ``seed`` with each problem's prompt sets its samples. Bad input is an error
    before any compute. ``on_batch`` receives each batch's `BatchStats` as it finishes (a
    pool's: once, at its end), for progress and benchmarks. ``grader(answer, gold)`` says
    whether a chosen answer (None: no answer) is right (default: MATH's `is_equiv`); the
    search itself holds no task-specific code.
    """
    spec = strategy_spec(strategy, budget, prm is not None)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be an integer >= 1 (sample rows a call), got {max_rows!r}")
    problems = _check_problems(problems)
    if not callable(grader):
        raise ValueError(f"grader must be callable as grader(answer, gold), got {grader!r}")
    if lm.tokenizer is None:
        raise ValueError("search needs a policy with a tokenizer")
    if prm is not None:
        _check_prm(prm)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    engine = engine or default_engine(lm)
    if engine.lm is not lm:
        raise ValueError("engine belongs to another language model")
    prompter = build_prompter(strategy.prompt, strategy.step_delimiter, lm.tokenizer)
    search = _SEARCHES[strategy.name]
    per_batch = max(1, max_rows // budget)
    pooled = strategy.name in _POOLED
    results = []
    for start in range(0, len(problems), len(problems) if pooled else per_batch):
        batch = problems[start : len(problems) if pooled else start + per_batch]
        program_cache.release_if_crowded()
        began = time.perf_counter()
        with program_cache.CompileLog() as compiles:
            if pooled:
                outcomes, searches = tree_search(
                    spec, engine, prm, prompter, batch, budget, seed, rows=per_batch
                )
            else:
                outcomes, searches = search(spec, engine, prm, prompter, batch, budget, seed)
        wall_s = time.perf_counter() - began
        results.extend(
            _result(strategy, budget, problem, outcome, lm, prm, wall_s / len(batch), grader)
            for problem, outcome in zip(batch, outcomes, strict=True)
        )
        if on_batch is not None:
            on_batch(_stats(len(batch), wall_s, searches, compiles.programs))
    return results


def _stats(
    questions: int, wall_s: float, searches: list[SearchState], programs_compiled: int
) -> BatchStats:
    steps = sum(s.decode_steps() for s in searches)
    return BatchStats(
        questions=questions,
        wall_s=wall_s,
        rounds=sum(s.rounds for s in searches),
        device_calls=sum(s.device_calls for s in searches),
        verifier_calls=sum(s.verifier_calls for s in searches),
        decode_steps=steps,
        lane_steps=sum(s.lane_steps for s in searches),
        generated_tokens=sum(s.generated for s in searches),
        kv_slot_utilisation=sum(s.utilisation_sum() for s in searches) / max(1, steps),
        decode_s=sum(s.seconds["decode"] for s in searches),
        verify_s=sum(s.seconds["verify"] for s in searches),
        select_s=sum(s.seconds["select"] for s in searches),
        programs_compiled=programs_compiled,
    )


# Strategies searched as one pool of questions, ``max_rows // budget`` at a time (their
# questions end at different rounds); the others run in fixed batches.
_POOLED = {"beam", "lookahead", "dvts"}

_SEARCHES = {
    "majority": parallel_search,
    "best_of_n": parallel_search,
    "beam": tree_search,
    "lookahead": tree_search,
    "dvts": tree_search,
    "revisions": revision_search,
}


def _result(strategy, budget, problem: Problem, outcome: Outcome, lm, prm, wall_s, grader):
    chosen = None if outcome.chosen is None else outcome.candidates[outcome.chosen]
    answer = None if chosen is None else chosen.answer
    correct = None if not problem.answer else bool(grader(answer, problem.answer))
    accounting = outcome.counts.accounting(
        generations(strategy, budget),
        lm.config,
        None if prm is None else prm.backbone.config,
        wall_s,
    )
    return SearchResult(
        problem.id, strategy.name, budget, answer, correct, outcome.candidates, accounting
    )


def _check_problems(problems) -> list[Problem]:
    if isinstance(problems, Problem):
        raise ValueError("problems must be a list of Problem records, not one Problem")
    problems = list(problems) if isinstance(problems, Sequence) else None
    if not problems:
        raise ValueError("problems must be a non-empty list of ttc_jax.math.Problem records")
    for i, problem in enumerate(problems):
        if not isinstance(problem, Problem):
            raise ValueError(f"problems[{i}] is {type(problem).__name__}, not a Problem")
    return problems


def _check_prm(prm: PRM) -> None:
    """The PRM's format works with its tokenizer: a question and two steps go through it, and
    its tokenizer fits its vocabulary (a clear error here rather than mid-search)."""
    tokenizer = prm.backbone.tokenizer
    vocab = prm.backbone.config.vocab_size
    if tokenizer is None:
        raise ValueError("the PRM has no tokenizer")
    if len(tokenizer) > vocab:
        raise ValueError(
            f"the PRM's tokenizer has {len(tokenizer)} tokens, more than its vocabulary of {vocab}"
        )
    try:
        ids = prm.format.question_ids("What is 1 + 1?")
        for index in range(2):
            ids += prm.format.step_ids("1 + 1 = 2.", index)[0]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"the PRM's tokenizer does not fit its {prm.kind} format: {e}") from e
    if max(ids) >= vocab:
        raise ValueError(f"the PRM's tokenizer gives ids past its vocabulary of {vocab}")
