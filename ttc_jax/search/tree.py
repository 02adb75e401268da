"""Tree search against a PRM, one reasoning step per round: beam search, lookahead, DVTS.

Every question has N slots (the budget), split into groups that never exchange candidates:
beam search and lookahead use one group of N, DVTS N / M independent subtrees of M. A round
extends every live slot by one step (to the step delimiter), scores the new steps with the
PRM, and then, in each group with c of its G slots already spent on finished candidates:

* slots whose sample ended (EOS, or the token budget) leave for the question's pool of final
  candidates;
* the top K = max(1, (G - c) // M) live beams by score are kept (beam search: N / M when
  nothing has finished; a DVTS subtree: its best one) and copied over the group's G - c
  slots, M copies each, which then sample their next steps independently;
* the group's other slots are frozen.

Lookahead k scores each candidate step by the PRM's score at the end of a k-step greedy
rollout from it; the rollouts are then undone in both models (`SearchState.rollback`), so no
rollout token is kept. k = 0 is beam search. Search stops when every group has spent its
slots or has nothing live, or after ``max_rounds`` rounds; beams still live then are final
candidates that never finished, so they are never chosen. The answer is chosen over the
pool by ``config.selection`` (best-of-N weighted by default).

The host runs once per round for all questions, not per question or per token.
"""

from __future__ import annotations

import math

import numpy as np

from ttc_jax.engine import Engine, SamplingConfig
from ttc_jax.math.datasets import Problem
from ttc_jax.prm import PRM
from ttc_jax.search.candidates import Outcome, candidate, choose
from ttc_jax.search.prompting import Prompter
from ttc_jax.search.state import SearchState

GREEDY = SamplingConfig(temperature=0)


def tree_search(
    config,
    engine: Engine,
    prm: PRM,
    prompter: Prompter,
    problems: list[Problem],
    budget: int,
    seed: int,
) -> list[Outcome]:
    """``config.name`` "beam", "lookahead" or "dvts" (see the module docstring)."""
    width = config.beam_width
    group_size = width if config.name == "dvts" else budget
    lookahead = config.lookahead_steps if config.name == "lookahead" else 0
    search = SearchState(
        engine,
        prm,
        [prompter.text(p) for p in problems],
        [p.problem for p in problems],
        budget,
        config.max_new_tokens,
        seed,
    )
    sampling = SamplingConfig(config.temperature, config.top_p, config.top_k)
    num_questions = len(problems)
    pools = [[] for _ in problems]  # final candidates per question
    spent = np.zeros((num_questions, budget // group_size), int)  # finished slots per group
    live = np.ones((num_questions, budget), bool)
    for _ in range(config.max_rounds):
        if not live.any():
            break
        round_ = search.extend(sampling, config.step_delimiter, config.max_step_tokens)
        new_steps = search.record(round_, config.step_delimiter)
        search.score(
            [
                [steps if live[q, n] else [] for n, steps in enumerate(row)]
                for q, row in enumerate(new_steps)
            ]
        )
        ranking = _last_scores(search, live)
        if lookahead:
            ranking = _lookahead_scores(search, config, live, lookahead, ranking)
        for q, n in zip(*np.nonzero(live), strict=True):
            slot = search.history[q][n]
            if slot.ended:
                pools[q].append(candidate(slot, config.aggregation))
                spent[q, n // group_size] += 1
                live[q, n] = False
        indices, frozen, live = _select(ranking, live, spent, group_size, width)
        search.reorder(indices)
        search.freeze(frozen)
    for q, n in zip(*np.nonzero(live), strict=True):
        pools[q].append(candidate(search.history[q][n], config.aggregation))
    counts = search.finish_counts()
    return [
        Outcome(pool, choose(pool, config.selection), counts[q]) for q, pool in enumerate(pools)
    ]


def _last_scores(search: SearchState, live: np.ndarray) -> np.ndarray:
    """[Q, N] each live slot's latest step score (NaN elsewhere)."""
    scores = np.full(live.shape, np.nan)
    for q, n in zip(*np.nonzero(live), strict=True):
        history = search.history[q][n].scores
        if history:
            scores[q, n] = history[-1]
    return scores


def _lookahead_scores(
    search: SearchState, config, live: np.ndarray, steps: int, scores: np.ndarray
) -> np.ndarray:
    """[Q, N] the PRM's score at the end of a ``steps``-step greedy rollout from each live slot
    (its own score if the rollout adds nothing); both models are rolled back afterwards."""
    saved = search.checkpoint()
    scores = scores.copy()
    for _ in range(steps):
        round_ = search.extend(GREEDY, config.step_delimiter, config.max_step_tokens)
        rollout = search.record(round_, config.step_delimiter)
        new = search.score(
            [[s if live[q, n] else [] for n, s in enumerate(row)] for q, row in enumerate(rollout)],
            keep=False,
        )
        for q, n in zip(*np.nonzero(live), strict=True):
            if new[q][n]:
                scores[q, n] = new[q][n][-1]
    search.rollback(saved)
    return scores


def _select(
    scores: np.ndarray, live: np.ndarray, spent: np.ndarray, group_size: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: keep the top K live beams, copy them over the group's unspent slots.

    Returns reorder indices [Q, N], the slots to freeze [Q, N] and the new live mask.
    """
    num_questions, budget = live.shape
    indices = np.tile(np.arange(budget), (num_questions, 1))
    next_live = np.zeros_like(live)
    for q in range(num_questions):
        for g, start in enumerate(range(0, budget, group_size)):
            slots = np.arange(start, start + group_size)
            beams = [n for n in slots if live[q, n]]
            room = group_size - spent[q, g]
            if not beams or room <= 0:
                continue
            # Best first; an unscored beam (NaN) last; ties to the lower slot.
            beams.sort(key=lambda n: (-_value(scores[q, n]), n))
            kept = beams[: max(1, room // width)]
            for i, n in enumerate(slots[:room]):
                indices[q, n] = kept[i % len(kept)]
                next_live[q, n] = True
    return indices, ~next_live, next_live


def _value(score: float) -> float:
    return -math.inf if math.isnan(score) else score
