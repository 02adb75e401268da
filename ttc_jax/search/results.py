"""What a search returns per problem: the answer, every candidate, and the compute it took.

Compute is counted exactly, from the tokens each model actually processed:

* ``policy_prefill_tokens``: prompt tokens the policy ran (a prompt once per question and
  start, however many samples share it);
* ``policy_decode_tokens``: tokens the policy generated, rollouts and discarded beams included;
* ``verifier_tokens``: tokens the PRM (or revision verifier) ran: each question once, then
  every scored step's tokens;
* FLOPs: 2 x parameters x tokens for each model apart, embeddings excluded (the usual
  forward-pass estimate; attention over the context is not counted);
* ``generations``: the paper's budget unit (`ttc_jax.search.configs.generations`).

``wall_s`` is the wall time of the call that searched the problem, split evenly over the
problems it searched together.
"""

from __future__ import annotations

import dataclasses

from ttc_jax.models.config import ModelConfig, non_embedding_params


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One full answer a strategy produced."""

    text: str  # the solution, steps joined by the step delimiter
    answer: str | None  # extracted final answer (None: none found)
    step_scores: list[float]  # the verifier's score of each step (empty without one)
    score: float  # step scores aggregated (NaN without a verifier)
    finished: bool  # ended by EOS; unfinished candidates are never chosen


@dataclasses.dataclass(frozen=True)
class Accounting:
    generations: int
    policy_prefill_tokens: int
    policy_decode_tokens: int
    verifier_tokens: int
    policy_flops: float
    verifier_flops: float
    wall_s: float

    @property
    def flops(self) -> float:
        return self.policy_flops + self.verifier_flops


@dataclasses.dataclass(frozen=True)
class SearchResult:
    problem_id: str
    strategy: str
    budget: int
    answer: str | None
    correct: bool | None  # None when the problem has no reference answer
    candidates: list[Candidate]
    accounting: Accounting

    def to_json_dict(self) -> dict:
        return dataclasses.asdict(self)


def forward_flops(config: ModelConfig, tokens: int) -> float:
    """2 x non-embedding parameters x tokens."""
    return 2.0 * non_embedding_params(config) * tokens


@dataclasses.dataclass
class TokenCounts:
    """Running token counts of one problem, while its search runs."""

    prefill: int = 0
    decode: int = 0
    verifier: int = 0

    def accounting(
        self,
        generations: int,
        policy: ModelConfig,
        verifier: ModelConfig | None,
        wall_s: float,
    ) -> Accounting:
        return Accounting(
            generations=generations,
            policy_prefill_tokens=self.prefill,
            policy_decode_tokens=self.decode,
            verifier_tokens=self.verifier,
            policy_flops=forward_flops(policy, self.prefill + self.decode),
            verifier_flops=0.0 if verifier is None else forward_flops(verifier, self.verifier),
            wall_s=wall_s,
        )


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """How one batch of a search spent its time and its rows (for benchmarks and progress)."""

    questions: int
    wall_s: float
    rounds: int  # the search's decode calls (each may run several device calls)
    device_calls: int  # calls of the compiled decode loop: a host round trip each
    verifier_calls: int  # the PRM's scoring calls: a host round trip each
    decode_steps: int
    lane_steps: int  # sample rows computed x decode steps, padding lanes included
    generated_tokens: int
    # Of the suffix slots live samples read per decode step, the share holding their tokens
    # (the rest is allocation not yet written), weighted by decode steps.
    kv_slot_utilisation: float
    decode_s: float  # waiting on the policy's decode calls
    verify_s: float  # waiting on the verifier
    select_s: float  # dispatching reorders, freezes, checkpoints and rollbacks
    programs_compiled: int  # XLA programs the batch compiled (0 once its shapes are warm)

    @property
    def lane_utilisation(self) -> float:
        """Generated tokens per row computed in a decode step: 1 when every row computed adds
        a token; what the search wastes when it is below."""
        return self.generated_tokens / max(1, self.lane_steps)

    @property
    def host_s(self) -> float:
        """Everything else: tokenizing, decoding texts, grading, the selection logic."""
        return self.wall_s - self.decode_s - self.verify_s - self.select_s
