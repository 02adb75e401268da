"""`SearchState`: the one state of a batched search over Q questions x N sample slots.

It holds the policy's decode state, the verifier's scoring state and the host-side history
of every slot (its steps, as generated and as the verifier reads them, and their scores), and
changes them together: `reorder` gathers all three by the same indices, `freeze` sets slots
aside, `checkpoint` / `rollback` undo a lookahead's rollout in both models. Token counts per
question accumulate as the models run (`ttc_jax.search.results.TokenCounts`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from ttc_jax.bucketing import bucket_length
from ttc_jax.engine import Engine, Finish, SamplingConfig
from ttc_jax.engine.selection import moved_mask
from ttc_jax.math.prompts import split_steps
from ttc_jax.prm import PRM
from ttc_jax.search.prompting import step_text
from ttc_jax.search.results import TokenCounts


@dataclasses.dataclass
class SlotHistory:
    """What one sample slot has produced so far."""

    raw: list[str] = dataclasses.field(default_factory=list)  # steps as generated
    steps: list[str] = dataclasses.field(default_factory=list)  # as the verifier reads them
    scores: list[float] = dataclasses.field(default_factory=list)
    finish: Finish = Finish.RUNNING
    pending: str = ""  # the step being generated, over one or more decode calls
    pending_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.raw) + self.pending

    @property
    def ended(self) -> bool:
        """EOS, the token budget, or set aside: the slot will not be extended again."""
        return self.finish in (Finish.EOS, Finish.LENGTH, Finish.FROZEN)


@dataclasses.dataclass
class Round:
    """One decode call: each slot's new text (None where nothing was added)."""

    texts: list[list[str | None]]
    finish: np.ndarray  # [Q, N] Finish values after the call (held slots: STOP)
    tokens: np.ndarray  # [Q, N] tokens each slot added
    steps: int  # decode steps the call ran
    lane_steps: int  # sample rows computed x decode steps
    device_calls: int  # calls of the compiled decode loop


class SearchState:
    """Q questions x N slots of one policy (and maybe one verifier), searched together."""

    def __init__(
        self,
        engine: Engine,
        prm: PRM | None,
        prompts: Sequence[str],
        questions: Sequence[str],
        num_samples: int,
        max_new_tokens: int,
        seed: int,
        streams: Sequence[int] | None = None,
        whole_solutions: bool = False,
        room_for: tuple[Sequence[str], Sequence[str]] = ((), ()),
    ):
        """``whole_solutions``: the slots will decode whole solutions in one `extend` call
        (parallel sampling, revisions), so the cache's whole suffix is allocated up front
        rather than in stages (one decode program, not one per stage). ``room_for``: the
        prompts and questions to be admitted later (`admit`), whose lengths the policy's and
        the verifier's prefixes must also hold."""
        self.engine = engine
        self.prm = prm
        self.num_questions = len(prompts)
        self.num_samples = num_samples
        self.seed = seed
        # The decode state holds a bucketed count of samples; the extra slots stay frozen.
        self.slots = engine.padded_samples(num_samples)
        self.max_new_tokens = max_new_tokens
        prompt_ids = engine.tokenize(list(prompts))
        waiting_prompts, waiting_questions = room_for
        longest = max(len(ids) for ids in prompt_ids)
        if waiting_prompts:
            longest = max(longest, *(len(ids) for ids in engine.tokenize(list(waiting_prompts))))
        engine.check_context(longest, max_new_tokens)
        width = bucket_length(longest - 1) if waiting_prompts else None
        batch = engine.layout(prompt_ids, streams, width=width)
        capacity = bucket_length(max_new_tokens)
        self.counts = [TokenCounts(prefill=len(ids)) for ids in prompt_ids]
        self.history = [[SlotHistory() for _ in range(num_samples)] for _ in prompts]
        allocate = capacity if whole_solutions else None
        self.policy = engine.start(batch, num_samples, capacity, seed, allocate=allocate)
        self.verifier = None
        if prm is not None:
            self.verifier = prm.start(list(questions), self.slots, room_for=waiting_questions)
        self.utilisation: list[tuple[float, int]] = []  # (utilisation, steps) per call
        # Seconds spent waiting on the policy's decode calls, the verifier's scoring calls
        # and selection (reorder, freeze, checkpoint, rollback: dispatch only, the device
        # work runs ahead and is waited for by the next decode).
        self.seconds = {"decode": 0.0, "verify": 0.0, "select": 0.0}
        self.rounds = 0  # decode calls
        self.device_calls = 0  # calls of the compiled decode loop (several per decode call)
        self.verifier_calls = 0
        self.lane_steps = 0  # sample rows computed x decode steps (padding lanes included)
        self.generated = 0

    @contextlib.contextmanager
    def _timed(self, part: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - start

    # -- generation ---------------------------------------------------------------------------

    def extend(
        self,
        sampling: SamplingConfig,
        stop: str | Sequence[str],
        max_tokens: int,
        hold: np.ndarray | None = None,
        return_on_pause: bool = False,
        settle_group: int | None = None,
        greedy: np.ndarray | None = None,
        budget: np.ndarray | None = None,
    ) -> Round:
        """One decode call: every live slot not in ``hold`` [Q, N] runs to the stop string,
        EOS or ``max_tokens`` tokens (or, with ``return_on_pause``, until some question's
        slots, or some group of ``settle_group`` consecutive slots, are all paused or
        ended); its new text joins its slot's pending step. Slots marked in ``greedy`` [Q, N]
        decode greedily whatever ``sampling`` says; a slot pauses once it has added
        ``budget[q, n]`` tokens in this call."""
        live = np.array([[not slot.ended for slot in row] for row in self.history])
        with self._timed("decode"):
            self.policy, out = self.engine.extend(
                self.policy,
                max_tokens=max_tokens,
                token_limit=self.max_new_tokens,
                sampling=sampling,
                stop=stop,
                hold=None if hold is None else self._pad(hold),
                greedy=None if greedy is None else self._pad(greedy),
                budget=None if budget is None else self._pad(budget, max_tokens),
                return_on_pause=return_on_pause,
                # Groups must divide the padded slot count; finer groups only end calls sooner.
                settle_group=None if settle_group is None else math.gcd(settle_group, self.slots),
            )
        new_ids = self.engine.new_tokens(out, self.num_questions, self.num_samples)
        finish = np.asarray(out.finish)[: self.num_questions, : self.num_samples]
        # A sample that completed the stop string on its last allowed token reports STOP for
        # this call, but its state has ended (LENGTH): it ends now, as it would if a later
        # call held it, so that when it ends does not depend on its neighbours' pace.
        ended = np.asarray(self.policy.finish)[: self.num_questions, : self.num_samples]
        finish = np.where(
            (finish == Finish.STOP) & (ended == Finish.LENGTH), int(Finish.LENGTH), finish
        )
        texts, tokens = [], np.zeros(finish.shape, int)
        for q, samples in enumerate(new_ids):
            self.counts[q].decode += sum(len(ids) for ids in samples)
            tokens[q] = [len(ids) for ids in samples]
            texts.append([self.engine.text_of(ids) if ids else None for ids in samples])
        round_ = Round(texts, finish, tokens, int(out.steps), int(out.lane_steps), int(out.calls))
        self._account(round_, live)
        self._absorb(round_)
        return round_

    def _account(self, round_: Round, live: np.ndarray) -> None:
        """What the call computed: decode steps and device calls, rows computed x steps
        against tokens generated (lane utilisation), and the KV-slot utilisation: of the
        suffix slots the live samples read in each step, the share holding their tokens."""
        self.rounds += 1
        self.device_calls += round_.device_calls
        cache = self.policy.cache
        lengths = np.asarray(cache.suffix_len)[: self.num_questions, : self.num_samples]
        read = max(1, int(live.sum()) * cache.capacity)
        self.utilisation.append((float(lengths[live].sum()) / read, round_.steps))
        self.lane_steps += round_.lane_steps
        self.generated += int(round_.tokens.sum())

    def _absorb(self, round_: Round) -> None:
        for q, row in enumerate(self.history):
            for n, slot in enumerate(row):
                if not slot.ended:
                    slot.finish = Finish(int(round_.finish[q, n]))
                if round_.texts[q][n] is not None:
                    slot.pending += round_.texts[q][n]
                    slot.pending_tokens += int(round_.tokens[q, n])

    def close_steps(
        self, slots: np.ndarray | None, delimiter: str, whole_solutions: bool = False
    ) -> list[list[list[str]]]:
        """Ends the pending step of each slot marked in ``slots`` [Q, N] (None: every slot)
        and returns, per slot,
        the new steps as the verifier reads them: the step (none if blank), or, with
        ``whole_solutions``, every step of a whole solution split at the delimiter."""
        if slots is None:
            slots = np.ones((self.num_questions, self.num_samples), bool)
        new_steps = []
        for q, row in enumerate(self.history):
            steps_row = []
            for n, slot in enumerate(row):
                steps = []
                if slots[q, n] and (slot.pending or slot.pending_tokens):
                    text, slot.pending, slot.pending_tokens = slot.pending, "", 0
                    slot.raw.append(text)
                    if whole_solutions:
                        steps = split_steps(text, delimiter)
                    elif step_text(text, delimiter):
                        steps = [step_text(text, delimiter)]
                    slot.steps.extend(steps)
                steps_row.append(steps)
            new_steps.append(steps_row)
        return new_steps

    def _pad(self, values: np.ndarray, fill=False) -> np.ndarray:
        """A [Q, N] slot mask (or, with ``fill``, values) widened to the decode state's
        bucketed sample count; the padding slots get ``fill``."""
        values = np.asarray(values, type(fill))
        width = ((0, 0), (0, self.slots - self.num_samples))
        return np.pad(values, width, constant_values=fill)

    # -- verification -------------------------------------------------------------------------

    def score(self, new_steps: Sequence[Sequence[Sequence[str]]], keep: bool | np.ndarray = True):
        """Scores lists of new steps per slot (``new_steps[q][n]``); the scores of the slots
        ``keep`` marks (True: all; or a [Q, N] bool mask) join the slots' histories. Returns
        ``scores[q][n]`` lists."""
        if self.prm is None:
            raise ValueError("this search has no verifier")
        padded = [
            list(new_steps[q]) + [[]] * (self.verifier.num_candidates - self.num_samples)
            for q in range(self.num_questions)
        ]
        with self._timed("verify"):
            self.verifier, scores = self.prm.score_steps(self.verifier, padded)
        self.verifier_calls += 1
        scores = [row[: self.num_samples] for row in scores]
        kept = np.broadcast_to(np.asarray(keep, bool), (self.num_questions, self.num_samples))
        for q, n in zip(*np.nonzero(kept), strict=True):
            self.history[q][n].scores.extend(scores[q][n])
        return scores

    # -- selection ----------------------------------------------------------------------------

    def reorder(self, indices: np.ndarray, moved: Sequence[int] | np.ndarray | None = None) -> None:
        """Slot n' of question q continues slot ``indices[q, n']``: policy cache, verifier
        cache and history together (copies of one slot get their own history objects). Only
        ``moved`` (question indices, or a [Q, N] bool mask of slots; default: all) are
        selecting now: only their samples move and get fresh keys."""
        indices = np.asarray(indices)
        extra = np.arange(self.num_samples, self.slots)
        padded = np.concatenate([indices, np.tile(extra, (self.num_questions, 1))], axis=1)
        mask = moved_mask(
            np.arange(self.num_questions) if moved is None else moved,
            self.num_questions,
            self.num_samples,
        )
        engine_moved = None if moved is None else self._pad(mask)
        with self._timed("select"):
            self.policy = self.engine.reorder(self.policy, padded, engine_moved)
            if self.verifier is not None:
                self.verifier = self.prm.reorder(self.verifier, padded, engine_moved)
        for q in np.flatnonzero(mask.any(axis=1)):
            before = self.history[q]
            self.history[q] = [
                copy.deepcopy(before[int(source)]) if mask[q, n] else before[n]
                for n, source in enumerate(indices[q])
            ]

    def freeze(self, frozen: np.ndarray) -> None:
        """Sets the marked slots [Q, N] aside for good."""
        frozen = np.asarray(frozen, bool)
        with self._timed("select"):
            self.policy = self.engine.freeze(self.policy, self._pad(frozen))
        for q, n in zip(*np.nonzero(frozen), strict=True):
            self.history[q][n].finish = Finish.FROZEN

    def checkpoint(self, questions: Sequence[int] | None = None):
        """What `rollback` needs to bring ``questions`` (default: all) back as they are now,
        whatever the other questions do meanwhile."""
        questions = range(self.num_questions) if questions is None else questions
        with self._timed("select"):
            return (
                self.engine.checkpoint(self.policy),
                None if self.verifier is None else self.verifier.checkpoint(),
                {int(q): copy.deepcopy(self.history[q]) for q in questions},
            )

    def rollback(self, saved, questions: Sequence[int] | None = None) -> None:
        """``questions`` (default: all that `checkpoint` ``saved`` holds) back as they were at
        ``saved``; each question is rolled back from a checkpoint at most once (its saved
        history is taken over, not copied)."""
        policy, verifier, history = saved
        questions = list(history) if questions is None else [int(q) for q in questions]
        with self._timed("select"):
            self.policy = self.engine.rollback(self.policy, policy, questions)
            if verifier is not None:
                self.verifier = self.prm.rollback(self.verifier, verifier, questions)
        for q in questions:
            self.history[q] = history.pop(q)

    # -- a streaming pool ---------------------------------------------------------------------

    def admit(self, rows: Sequence[int], prompts: Sequence[str], questions: Sequence[str]) -> None:
        """Questions ``rows``, whose slots have all ended, start over with new prompts
        (`Engine.admit`, `PRM.admit`), with fresh histories and token counts (read the old
        ones with `finish_counts` first); the other questions go on as they are. The new
        prompts and questions must be among those the state was made with ``room_for``."""
        rows = [int(r) for r in rows]
        prompt_ids = self.engine.tokenize(list(prompts))
        batch = self.engine.layout(prompt_ids, width=self.policy.cache.prefix_valid.shape[1])
        with self._timed("select"):
            self.policy = self.engine.admit(self.policy, rows, batch, self.num_samples, self.seed)
            if self.verifier is not None:
                self.verifier = self.prm.admit(self.verifier, rows, list(questions))
        for row, ids in zip(rows, prompt_ids, strict=True):
            self.counts[row] = TokenCounts(prefill=len(ids))
            self.history[row] = [SlotHistory() for _ in range(self.num_samples)]

    # -- accounting ---------------------------------------------------------------------------

    def finish_counts(self) -> list[TokenCounts]:
        """Token counts per question, with the verifier's tokens read off its state."""
        if self.verifier is not None:
            for q, processed in enumerate(self.verifier.processed[: self.num_questions]):
                self.counts[q].verifier = int(processed)
        return self.counts

    def decode_steps(self) -> int:
        return sum(steps for _, steps in self.utilisation)

    def utilisation_sum(self) -> float:
        """Utilisation x decode steps, summed over calls (see `Round.utilisation`)."""
        return sum(u * steps for u, steps in self.utilisation)
