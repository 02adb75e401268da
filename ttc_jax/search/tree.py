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
rollout token is kept. A question's rollouts decode at its own pace, greedily, in the same
decode calls as the other questions' sampled steps (the engine's ``greedy`` rows), so no
question waits for another's rollouts. k = 0 is beam search. A question stops when every
group has spent its slots or has nothing live, or after ``max_rounds`` rounds; beams still
live then are final candidates that never finished, so they are never chosen. The answer is
chosen over the pool by ``spec.selection`` (best-of-N weighted by default).

Groups keep their own rounds (a question's one group in beam search and lookahead, each
subtree in DVTS). A slot that reaches its step's end waits (held) until every live slot of
its group has, and then that group alone is scored, selects and goes on, while the others
keep decoding; a held or ended slot costs no decode work (the engine decodes only live rows,
gathered into lanes). A decode call returns once some group has every live slot at its
step's end and fewer than half the lanes are live (or after ``tokens_per_call`` tokens);
every group ready by then is scored in one PRM call. Samples of a group therefore wait for
the longest step among its own slots, not for the longest in the question or the batch, and
a group's result does not depend on the others: its samples' keys follow its own path of
selections, and a question's pool lists its candidates in the order they would join if
every group kept its question's pace. A slot that completes its step on its last allowed
token ends in that round (`SearchState.extend`), whatever its neighbours do. The host runs
once per decode call and once per round of ready groups, never per token.
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


class _Tree:
    """The bookkeeping of a batched tree search: which slots are live, which have finished
    their current step, how many rounds each group has had, and the final pools."""

    def __init__(self, spec: TreeSpec, search: SearchState, budget: int):
        self.spec = spec
        self.search = search
        self.width = spec.beam_width
        self.group_size = self.width if spec.independent_subtrees else budget
        shape = (search.num_questions, budget)
        groups = (search.num_questions, budget // self.group_size)
        self.live = np.ones(shape, bool)
        self.step_done = np.zeros(shape, bool)
        self.spent = np.zeros(groups, int)
        self.rounds = np.zeros(groups, int)
        # Lookahead: 0 while a group samples its step, i >= 1 while its slots' rollouts take
        # their i-th greedy step; the checkpoint each question's rollouts return to; the
        # scores a group's selection ranks its slots by (NaN: unscored).
        if spec.lookahead_steps and spec.independent_subtrees:
            raise ValueError("lookahead rolls back whole questions; it cannot run per subtree")
        self.rollout = np.zeros(groups, int)
        self.saved: dict[int, tuple] = {}
        self.ranking = np.full(shape, np.nan)
        # Final candidates per question, each with its place in the pool: (round, 0 for an
        # ended slot or 1 for one still live at the last round, slot), the order they would
        # join in if every group kept its question's pace.
        self.pools = [[] for _ in range(search.num_questions)]

    def running(self) -> bool:
        return bool(self.live.any())

    def _by_group(self, slots: np.ndarray) -> np.ndarray:
        """[Q, N] slots as [Q, groups, group size]."""
        return slots.reshape((*self.spent.shape, self.group_size))

    def _slots_of(self, groups: np.ndarray) -> np.ndarray:
        """[Q, groups] marks as [Q, N]: every slot of each marked group."""
        return np.repeat(groups, self.group_size, axis=1)

    def decode(self, sampling: SamplingConfig) -> np.ndarray:
        """One decode call for every live slot still in its step (greedily where its group
        is rolling out); returns [Q, groups] bool: the groups whose live slots have all
        reached their step's end."""
        spec = self.spec
        hold = self.live & self.step_done
        round_ = self.search.extend(
            sampling,
            spec.step_delimiter,
            spec.tokens_per_call,
            hold,
            return_on_pause=True,
            settle_group=self.group_size,
            greedy=self._slots_of(self.rollout > 0),
            budget=self._step_budget(),
        )
        moving = self.live & ~hold
        for q, n in zip(*np.nonzero(moving), strict=True):
            slot = self.search.history[q][n]
            # Paused at the delimiter, ended, or as long as a step may be: the step is done.
            if round_.finish[q, n] != Finish.RUNNING or (
                slot.pending_tokens >= spec.max_step_tokens
            ):
                self.step_done[q, n] = True
        waiting = self._by_group(self.live & ~self.step_done).any(axis=2)
        return self._by_group(self.live).any(axis=2) & ~waiting

    def _step_budget(self) -> np.ndarray:
        """[Q, N] the tokens each slot's current step may still add (at least 1), so that a
        step is cut at ``max_step_tokens`` whenever its decode calls return."""
        pending = np.array([[slot.pending_tokens for slot in row] for row in self.search.history])
        return np.maximum(1, self.spec.max_step_tokens - pending)

    def finish_round(self, ready: np.ndarray) -> None:
        """Scores the steps of the ``ready`` [Q, groups] groups, whose steps are all done, in
        one PRM call. A group that has just sampled its step ranks its slots by their new
        scores, or, with lookahead k, first rolls them out greedily for k steps (at its
        own pace, beside the other groups' decoding) and ranks them by the PRM's score at
        the end; its rollouts are then undone in both models. A group done ranking selects
        within itself, so its result depends on its own slots alone."""
        search, spec = self.search, self.spec
        slots = self._slots_of(ready) & self.live
        rolled = slots & self._slots_of(self.rollout > 0)
        new = search.score(search.close_steps(slots, spec.step_delimiter), keep=slots & ~rolled)
        for q, n in zip(*np.nonzero(slots), strict=True):
            if rolled[q, n]:
                if new[q][n]:
                    self.ranking[q, n] = new[q][n][-1]
            else:
                history = search.history[q][n].scores
                self.ranking[q, n] = history[-1] if history else np.nan
        rolling_on = ready & (self.rollout < spec.lookahead_steps)
        starting = rolling_on & (self.rollout == 0)
        if starting.any():
            questions = np.flatnonzero(starting.any(axis=1))
            saved = search.checkpoint(questions)
            self.saved.update(dict.fromkeys(questions.tolist(), saved))
        self.rollout[rolling_on] += 1
        self.step_done[self._slots_of(rolling_on)] = False
        ranked = ready & ~rolling_on
        if ranked.any():
            self._select(ranked)

    def _select(self, ready: np.ndarray) -> None:
        """The end of a round for the ``ready`` [Q, groups] groups, ranked by
        ``self.ranking``: rollouts undone, ended slots to the pool, selection."""
        search, spec = self.search, self.spec
        for q in np.flatnonzero((ready & (self.rollout > 0)).any(axis=1)):
            # Only the rolled-out slots of q changed since its checkpoint.
            search.rollback(self.saved.pop(int(q)), [q])
        self.rollout[ready] = 0
        selecting = self._slots_of(ready)
        for q, n in zip(*np.nonzero(selecting & self.live), strict=True):
            slot = search.history[q][n]
            if slot.ended:
                place = (self.rounds[q, n // self.group_size], 0, n)
                self.pools[q].append((place, candidate(slot, spec.aggregation)))
                self.spent[q, n // self.group_size] += 1
                self.live[q, n] = False
        self.rounds[ready] += 1
        indices = np.tile(np.arange(self.live.shape[1]), (self.live.shape[0], 1))
        for q, g in zip(*np.nonzero(ready), strict=True):
            group = slice(g * self.group_size, (g + 1) * self.group_size)
            if self.rounds[q, g] >= spec.max_rounds:
                # What is still live joins the pool unfinished: never chosen.
                for n in np.flatnonzero(self.live[q, group]) + group.start:
                    unfinished = candidate(search.history[q][n], spec.aggregation)
                    self.pools[q].append(((self.rounds[q, g] - 1, 1, n), unfinished))
                self.live[q, group] = False
            chosen, self.live[q, group] = select_group(
                self.ranking[q, group], self.live[q, group], self.spent[q, g], self.width
            )
            indices[q, group] = chosen + group.start
        search.reorder(indices, selecting)
        search.freeze(selecting & ~self.live)
        self.step_done[selecting] = False
        self.ranking[selecting] = np.nan

    def done(self) -> np.ndarray:
        """The questions (rows) with no live slot left: their search is over."""
        return np.flatnonzero(~self.live.any(axis=1))

    def outcome(self, q: int) -> Outcome:
        """Question ``q``'s pool and chosen answer, once its search is over."""
        counts = self.search.finish_counts()
        pool = [c for _, c in sorted(self.pools[q], key=lambda entry: entry[0])]
        return Outcome(pool, choose(pool, self.spec.selection), counts[q])

    def restart(self, rows: np.ndarray) -> None:
        """Rows given new questions (`SearchState.admit`) start their first round."""
        for array, value in (
            (self.live, True),
            (self.step_done, False),
            (self.spent, 0),
            (self.rounds, 0),
            (self.rollout, 0),
            (self.ranking, np.nan),
        ):
            array[rows] = value
        for q in rows:
            self.pools[q] = []


def select_group(
    scores: np.ndarray, live: np.ndarray, spent: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One group's selection (a question's N slots, or a DVTS subtree's M): keep the top
    K = max(1, (G - spent) // width) live beams by ``scores`` [G] and copy them over the
    group's unspent slots. Returns reorder indices [G] within the group and its new live
    mask [G]."""
    size = live.shape[0]
    indices = np.arange(size)
    next_live = np.zeros_like(live)
    beams = list(np.flatnonzero(live))
    room = size - spent
    if not beams or room <= 0:
        return indices, next_live
    # Best first; an unscored beam (NaN) last; ties to the lower slot.
    beams.sort(key=lambda n: (-_value(scores[n]), n))
    kept = beams[: max(1, room // width)]
    for i in range(room):
        indices[i] = kept[i % len(kept)]
        next_live[i] = True
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
    rows: int | None = None,
) -> tuple[list[Outcome], list[SearchState]]:
    """Beam search, lookahead or DVTS, as ``spec`` says (see the module docstring), over a
    pool of questions ``rows`` at a time (default: all at once): when a question's search
    ends, the next waiting question takes its rows (`SearchState.admit`) while the others go
    on, so the lanes stay full to the end and memory holds ``rows`` questions. A question's
    outcome does not depend on ``rows`` or on when it was admitted."""
    prompts = [prompter.text(p) for p in problems]
    questions = [p.problem for p in problems]
    rows = len(problems) if rows is None else min(rows, len(problems))
    search = SearchState(
        engine,
        prm,
        prompts[:rows],
        questions[:rows],
        budget,
        spec.max_new_tokens,
        seed,
        room_for=(prompts[rows:], questions[rows:]),
    )
    tree = _Tree(spec, search, budget)
    held = list(range(rows))  # the problem each row holds (None: none left to admit)
    waiting = list(range(rows, len(problems)))
    outcomes: list[Outcome | None] = [None] * len(problems)
    while True:
        finished = [int(q) for q in tree.done() if held[q] is not None]
        for q in finished:
            outcomes[held[q]], held[q] = tree.outcome(q), None
        admitted = finished[: len(waiting)]
        if admitted:
            new, waiting = waiting[: len(admitted)], waiting[len(admitted) :]
            search.admit(admitted, [prompts[i] for i in new], [questions[i] for i in new])
            tree.restart(np.asarray(admitted))
            for q, i in zip(admitted, new, strict=True):
                held[q] = i
        if not tree.running():
            return outcomes, [search]
        ready = tree.decode(spec.sampling)
        if ready.any():
            tree.finish_round(ready)
