"""`SearchState`: the one state of a batched search over Q questions x N sample slots.

It holds the policy's decode state, the verifier's scoring state and the host-side history
of every slot (its steps, as generated and as the verifier reads them, and their scores), and
changes them together: `reorder` gathers all three by the same indices, `freeze` sets slots
aside, `checkpoint` / `rollback` undo a lookahead's rollout in both models. Token counts per
question accumulate as the models run (`ttc_jax.search.results.TokenCounts`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np

from ttc_jax.bucketing import bucket_length
from ttc_jax.engine import Engine, Finish, SamplingConfig
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

    @property
    def text(self) -> str:
        return "".join(self.raw)

    @property
    def ended(self) -> bool:
        """EOS, the token budget, or set aside: the slot will not be extended again."""
        return self.finish in (Finish.EOS, Finish.LENGTH, Finish.FROZEN)


@dataclasses.dataclass
class Round:
    """One extension of every live slot: the new raw text (None where nothing was added)."""

    texts: list[list[str | None]]
    finish: np.ndarray  # [Q, N] Finish values after the call
    steps: int  # decode steps the call ran
    utilisation: float  # written suffix tokens / suffix slots read, over the call's rows


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
    ):
        self.engine = engine
        self.prm = prm
        self.num_questions = len(prompts)
        self.num_samples = num_samples
        # The decode state holds a bucketed count of samples; the extra slots stay frozen.
        self.slots = engine.padded_samples(num_samples)
        self.max_new_tokens = max_new_tokens
        prompt_ids = engine.tokenize(list(prompts))
        batch = engine.layout(prompt_ids, streams)
        engine.check_context(batch.longest_prompt, max_new_tokens)
        capacity = bucket_length(max_new_tokens)
        self.counts = [TokenCounts(prefill=len(ids)) for ids in prompt_ids]
        self.history = [[SlotHistory() for _ in range(num_samples)] for _ in prompts]
        self.policy = engine.start(batch, num_samples, capacity, seed)
        self.verifier = None
        if prm is not None:
            self.verifier = prm.start(list(questions), self.slots)
        self.utilisation: list[tuple[float, int]] = []  # (utilisation, steps) per call

    # -- generation ---------------------------------------------------------------------------

    def extend(self, sampling: SamplingConfig, stop: str | Sequence[str], max_tokens: int) -> Round:
        """Extends every live slot once (to the stop string, EOS or ``max_tokens``)."""
        live = np.array([[not slot.ended for slot in row] for row in self.history])
        self.policy, out = self.engine.extend(
            self.policy,
            max_tokens=max_tokens,
            token_limit=self.max_new_tokens,
            sampling=sampling,
            stop=stop,
        )
        new_ids = self.engine.new_tokens(out, self.num_questions, self.num_samples)
        finish = np.asarray(out.finish)[: self.num_questions, : self.num_samples]
        texts = []
        for q, samples in enumerate(new_ids):
            self.counts[q].decode += sum(len(ids) for ids in samples)
            texts.append([self.engine.text_of(ids) if ids else None for ids in samples])
        # Of the slots the live samples read in each step, the share holding their tokens.
        lengths = np.asarray(self.policy.cache.suffix_len)[: self.num_questions, : self.num_samples]
        read = max(1, int(live.sum()) * self.policy.cache.capacity)
        utilisation = float(lengths[live].sum()) / read
        steps = int(out.steps)
        self.utilisation.append((utilisation, steps))
        return Round(texts, finish, steps, utilisation)

    def record(
        self, round_: Round, delimiter: str, whole_solutions: bool = False
    ) -> list[list[list[str]]]:
        """Adds a round's texts to the slots' histories and returns, per slot, the new steps
        as the verifier reads them: the one step a step-wise round added, or every step of a
        whole solution (``whole_solutions``) split at the delimiter."""
        new_steps = []
        for q in range(self.num_questions):
            row = []
            for n in range(self.num_samples):
                slot = self.history[q][n]
                text = round_.texts[q][n]
                if not slot.ended:
                    slot.finish = Finish(int(round_.finish[q, n]))
                steps = []
                if text is not None:
                    slot.raw.append(text)
                    # Blank steps (a lone delimiter, or just EOS) are not shown to the verifier.
                    if whole_solutions:
                        steps = split_steps(text, delimiter)
                    elif step_text(text, delimiter):
                        steps = [step_text(text, delimiter)]
                    slot.steps.extend(steps)
                row.append(steps)
            new_steps.append(row)
        return new_steps

    # -- verification -------------------------------------------------------------------------

    def score(self, new_steps: Sequence[Sequence[Sequence[str]]], keep: bool = True):
        """Scores lists of new steps per slot (``new_steps[q][n]``); with ``keep``, the scores
        join the slots' histories. Returns ``scores[q][n]`` lists."""
        if self.prm is None:
            raise ValueError("this search has no verifier")
        padded = [
            list(new_steps[q]) + [[]] * (self.verifier.num_candidates - self.num_samples)
            for q in range(self.num_questions)
        ]
        self.verifier, scores = self.prm.score_steps(self.verifier, padded)
        scores = [row[: self.num_samples] for row in scores]
        if keep:
            for q in range(self.num_questions):
                for n in range(self.num_samples):
                    self.history[q][n].scores.extend(scores[q][n])
        return scores

    # -- selection ----------------------------------------------------------------------------

    def reorder(self, indices: np.ndarray) -> None:
        """Slot n' of question q continues slot ``indices[q, n']``: policy cache, verifier
        cache and history together (copies of one slot get their own history objects)."""
        indices = np.asarray(indices)
        extra = np.arange(self.num_samples, self.slots)
        padded = np.concatenate([indices, np.tile(extra, (self.num_questions, 1))], axis=1)
        self.policy = self.engine.reorder(self.policy, padded)
        if self.verifier is not None:
            self.verifier = self.prm.reorder(self.verifier, padded)
        self.history = [
            [copy.deepcopy(self.history[q][int(n)]) for n in indices[q]]
            for q in range(self.num_questions)
        ]

    def freeze(self, frozen: np.ndarray) -> None:
        """Sets the marked slots [Q, N] aside for good."""
        frozen = np.asarray(frozen, bool)
        padded = np.pad(frozen, ((0, 0), (0, self.slots - self.num_samples)))
        self.policy = self.engine.freeze(self.policy, padded)
        for q, n in zip(*np.nonzero(frozen), strict=True):
            self.history[q][n].finish = Finish.FROZEN

    def checkpoint(self):
        return (
            self.engine.checkpoint(self.policy),
            None if self.verifier is None else self.verifier.checkpoint(),
            copy.deepcopy(self.history),
        )

    def rollback(self, saved) -> None:
        policy, verifier, history = saved
        self.policy = self.engine.rollback(self.policy, policy)
        if verifier is not None:
            self.verifier = self.prm.rollback(self.verifier, verifier)
        self.history = history

    # -- accounting ---------------------------------------------------------------------------

    def finish_counts(self) -> list[TokenCounts]:
        """Token counts per question, with the verifier's tokens read off its state."""
        if self.verifier is not None:
            for q, processed in enumerate(self.verifier.processed[: self.num_questions]):
                self.counts[q].verifier = int(processed)
        return self.counts

    def mean_utilisation(self) -> float:
        """Written suffix tokens / suffix slots read, weighted by decode steps."""
        steps = sum(s for _, s in self.utilisation)
        return sum(u * s for u, s in self.utilisation) / steps if steps else 0.0
