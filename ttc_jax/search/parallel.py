"""Parallel sampling: N independent solutions per question, then majority voting or
best-of-N (naive or weighted) by the verifier's scores of every step.

All questions run together: one decode to the end for every sample, then one verifier call
that scores every step of every candidate (each question's text is run once, then each
candidate's steps, in one batch).
"""

from __future__ import annotations

from ttc_jax.engine import Engine
from ttc_jax.math.datasets import Problem
from ttc_jax.prm import PRM
from ttc_jax.search.candidates import Outcome, candidate, choose
from ttc_jax.search.prompting import Prompter
from ttc_jax.search.specs import ParallelSpec
from ttc_jax.search.state import SearchState


def parallel_search(
    spec: ParallelSpec,
    engine: Engine,
    prm: PRM | None,
    prompter: Prompter,
    problems: list[Problem],
    budget: int,
    seed: int,
) -> tuple[list[Outcome], list[SearchState]]:
    """Majority voting or best-of-N (``spec.selection``)."""
    search = SearchState(
        engine,
        prm if spec.uses_verifier else None,
        [prompter.text(p) for p in problems],
        [p.problem for p in problems],
        budget,
        spec.max_new_tokens,
        seed,
        whole_solutions=True,
    )
    search.extend(spec.sampling, stop=(), max_tokens=spec.max_new_tokens)
    new_steps = search.close_steps(None, spec.step_delimiter, whole_solutions=True)
    if spec.uses_verifier:
        search.score(new_steps)
    counts = search.finish_counts()
    outcomes = []
    for q, row in enumerate(search.history):
        candidates = [candidate(slot, spec.aggregation) for slot in row]
        outcomes.append(Outcome(candidates, choose(candidates, spec.selection), counts[q]))
    return outcomes, [search]
