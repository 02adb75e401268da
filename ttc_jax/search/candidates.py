"""From a slot's history to a `Candidate`, and the final choice among a question's candidates."""

from __future__ import annotations

import dataclasses

from ttc_jax.engine import Finish
from ttc_jax.math.grading import extract_answer
from ttc_jax.search.aggregation import candidate_score, select
from ttc_jax.search.results import Candidate, TokenCounts
from ttc_jax.search.state import SlotHistory


@dataclasses.dataclass
class Outcome:
    """What a strategy found for one question, before grading."""

    candidates: list[Candidate]
    chosen: int | None  # index into candidates, or None when none qualifies
    counts: TokenCounts


def candidate(slot: SlotHistory, aggregation: str) -> Candidate:
    text = slot.text
    return Candidate(
        text=text,
        answer=extract_answer(text),
        step_scores=list(slot.scores),
        score=candidate_score(slot.scores, aggregation),
        finished=slot.finish == Finish.EOS,
    )


def choose(candidates: list[Candidate], method: str) -> int | None:
    """The chosen candidate by ``method`` ("majority", "best_of_n", "weighted")."""
    return select(
        [c.answer for c in candidates],
        [c.finished for c in candidates],
        None if method == "majority" else [c.score for c in candidates],
        method,
    )
