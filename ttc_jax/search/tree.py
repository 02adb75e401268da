"""Tree search against a PRM, one reasoning step per round: beam search, lookahead, DVTS.

Every question has N slots (the budget), split into groups that never exchange candidates:
beam search and lookahead use one group of N, DVTS N / M independent subtrees of M. A round
of a question extends each of its live slots by one step (to the step delimiter), scores the
new steps with the PRM, and then, in each group with c of its G slots already spent on
finished candidates:

* slots whose sample ended (EOS, or the token budget) leave for the question's pool of final
  candidates;
* the top K = max(1, (G - c) // M) live beams by score are kept (beam search: N / M when
  nothing has finished; a DVTS subtree: its best one) and copied over the group's G - c
  slots, M copies each, which then sample their next steps independently;
* the group's other slots are frozen.

Lookahead k scores each candidate step by the PRM's score at the end of a k-step greedy
rollout from it; the rollouts are then undone in both models (`SearchState.rollback`), so no
rollout token is kept. k = 0 is beam search. A question stops when every group has spent its
slots or has nothing live, or after ``max_rounds`` rounds; beams still live then are final
candidates that never finished, so they are never chosen. The answer is chosen over the
pool by ``spec.selection`` (best-of-N weighted by default).

Questions keep their own rounds. A slot that reaches its step's end waits (held) until every
live slot of its question has, and then that question alone is scored, selects and goes on,
while the others keep decoding; a held or ended slot costs no decode work (the engine decodes
only live rows, gathered into lanes). A decode call returns once some question has every live
slot at its step's end and fewer than half the lanes are live (or after ``tokens_per_call``
tokens); every question ready by then is scored in one PRM call. Samples of a question
therefore wait for the longest step among its own slots, not for the longest in the batch,
and a question's result does not depend on the others. The host runs once per decode call
and once per round of ready questions, never per token.
"""

from __future__ import annotations

import math

import numpy as np

from ttc_jax.engine import Engine, Finish, SamplingConfig
from ttc_jax.math.datasets import Problem
from ttc_jax.prm import PRM
from ttc_jax.search.candidates import Outcome, candidate, choose
from ttc_jax.search.prompting import Prompter
from ttc_jax.search.specs import TreeSpec
from ttc_jax.search.state import SearchState

GREEDY = SamplingConfig(temperature=0)


class _Tree:
    """The bookkeeping of a batched tree search: which slots are live, which have finished
    their current step, how many rounds each question has had, and the final pools."""

    def __init__(self, spec: TreeSpec, search: SearchState, budget: int):
        self.spec = spec
        self.search = search
        self.width = spec.beam_width
        self.group_size = self.width if spec.independent_subtrees else budget
        shape = (search.num_questions, budget)
        self.live = np.ones(shape, bool)
        self.step_done = np.zeros(shape, bool)
        self.spent = np.zeros((search.num_questions, budget // self.group_size), int)
        self.rounds = np.zeros(search.num_questions, int)
        self.pools = [[] for _ in range(search.num_questions)]

    def running(self) -> bool:
        return bool(self.live.any())

    def decode(self, sampling: SamplingConfig) -> np.ndarray:
        """One decode call for every live slot still in its step; returns the questions
        whose live slots have all reached their step's end."""
        spec = self.spec
        hold = self.live & self.step_done
        round_ = self.search.extend(
            sampling, spec.step_delimiter, spec.tokens_per_call, hold, return_on_pause=True
        )
        moving = self.live & ~hold
        for q, n in zip(*np.nonzero(moving), strict=True):
            slot = self.search.history[q][n]
            # Paused at the delimiter, ended, or as long as a step may be: the step is done.
            if round_.finish[q, n] != Finish.RUNNING or (
                slot.pending_tokens >= spec.max_step_tokens
            ):
                self.step_done[q, n] = True
        waiting = self.live & ~self.step_done
        return np.flatnonzero(self.live.any(axis=1) & ~waiting.any(axis=1))

    def finish_round(self, questions: np.ndarray, lookahead: int) -> None:
        """Scores, ranks and selects for ``questions``, whose steps are all done."""
        search, spec = self.search, self.spec
        slots = np.zeros_like(self.live)
        slots[questions] = self.live[questions]
        search.score(search.close_steps(slots, spec.step_delimiter))
        ranking = self._latest_scores(questions)
        if lookahead:
            ranking = self._lookahead_scores(questions, lookahead, ranking)
        for q in questions:
            for n in np.flatnonzero(self.live[q]):
                slot = search.history[q][n]
                if slot.ended:
                    self.pools[q].append(candidate(slot, spec.aggregation))
                    self.spent[q, n // self.group_size] += 1
                    self.live[q, n] = False
        self.rounds[questions] += 1
        indices = np.tile(np.arange(self.live.shape[1]), (self.live.shape[0], 1))
        for q in questions:
            if self.rounds[q] >= spec.max_rounds:
                # What is still live joins the pool unfinished: never chosen.
                for n in np.flatnonzero(self.live[q]):
                    self.pools[q].append(candidate(search.history[q][n], spec.aggregation))
                self.live[q] = False
            indices[q], self.live[q] = select_beams(
                ranking[q], self.live[q], self.spent[q], self.group_size, self.width
            )
        search.reorder(indices, questions)
        frozen = np.zeros_like(self.live)
        frozen[questions] = ~self.live[questions]
        search.freeze(frozen)
        self.step_done[questions] = False

    def close(self) -> list[Outcome]:
        counts = self.search.finish_counts()
        return [
            Outcome(pool, choose(pool, self.spec.selection), counts[q])
            for q, pool in enumerate(self.pools)
        ]

    def _latest_scores(self, questions) -> np.ndarray:
        """[Q, N] each live slot's latest step score (NaN elsewhere)."""
        scores = np.full(self.live.shape, np.nan)
        for q in questions:
            for n in np.flatnonzero(self.live[q]):
                history = self.search.history[q][n].scores
                if history:
                    scores[q, n] = history[-1]
        return scores

    def _lookahead_scores(self, questions, steps: int, scores: np.ndarray) -> np.ndarray:
        """[Q, N] the PRM's score at the end of a ``steps``-step greedy rollout from each
        live slot of ``questions`` (its own score if the rollout adds nothing). Other
        questions are held meanwhile; both models are then rolled back."""
        search, spec = self.search, self.spec
        saved = search.checkpoint()
        scores = scores.copy()
        rolling = np.zeros_like(self.live)
        rolling[questions] = self.live[questions]
        for _ in range(steps):
            done = ~rolling.copy()
            while not done.all():
                round_ = search.extend(
                    GREEDY, spec.step_delimiter, spec.tokens_per_call, done, True
                )
                for q, n in zip(*np.nonzero(~done), strict=True):
                    slot = search.history[q][n]
                    if round_.finish[q, n] != Finish.RUNNING or (
                        slot.pending_tokens >= spec.max_step_tokens
                    ):
                        done[q, n] = True
            new = search.score(search.close_steps(rolling, spec.step_delimiter), keep=False)
            for q, n in zip(*np.nonzero(rolling), strict=True):
                if new[q][n]:
                    scores[q, n] = new[q][n][-1]
        search.rollback(saved, questions)
        return scores


def select_beams(
    scores: np.ndarray, live: np.ndarray, spent: np.ndarray, group_size: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One question's selection, per group: keep the top K live beams by ``scores`` [N] and
    copy them over the group's unspent slots. Returns reorder indices [N] and the new live
    mask [N]."""
    budget = live.shape[0]
    indices = np.arange(budget)
    next_live = np.zeros_like(live)
    for g, start in enumerate(range(0, budget, group_size)):
        slots = np.arange(start, start + group_size)
        beams = [n for n in slots if live[n]]
        room = group_size - spent[g]
        if not beams or room <= 0:
            continue
        # Best first; an unscored beam (NaN) last; ties to the lower slot.
        beams.sort(key=lambda n: (-_value(scores[n]), n))
        kept = beams[: max(1, room // width)]
        for i, n in enumerate(slots[:room]):
            indices[n] = kept[i % len(kept)]
            next_live[n] = True
    return indices, next_live


def _value(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def tree_search(
    spec: TreeSpec,
    engine: Engine,
    prm: PRM,
    prompter: Prompter,
    problems: list[Problem],
    budget: int,
    seed: int,
) -> tuple[list[Outcome], list[SearchState]]:
    """Beam search, lookahead or DVTS, as ``spec`` says (see the module docstring)."""
    search = SearchState(
        engine,
        prm,
        [prompter.text(p) for p in problems],
        [p.problem for p in problems],
        budget,
        spec.max_new_tokens,
        seed,
    )
    tree = _Tree(spec, search, budget)
    while tree.running():
        ready = tree.decode(spec.sampling)
        if len(ready):
            tree.finish_round(ready, spec.lookahead_steps)
    return tree.close(), [search]
