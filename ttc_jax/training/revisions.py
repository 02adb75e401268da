"""Revision training data: a correct answer as the target, earlier wrong attempts as context.

As in the paper: for each question the policy samples many answers (unparsable ones are
dropped); for each correct answer, a number of incorrect answers k ~ Uniform{0..4} (fewer if
fewer exist) becomes its context, the incorrect answer closest to the correct one by character
edit distance last, the others drawn at random in random order. With k = 0 the revision model
learns first attempts too. The context is laid out by `FewShotPrompt.revision_text`, the one
layout revision training, revision search and the revision verifier share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

MAX_CONTEXT_ATTEMPTS = 4


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = np.arange(len(b) + 1)
    target = np.frombuffer(b.encode("utf-32-le"), np.uint32)
    for i, char in enumerate(a, start=1):
        substitution = previous[:-1] + (target != ord(char))
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(previous[1:] + 1, substitution)
        # Insertions chain along the row: a running minimum of (cost - position).
        current = np.minimum.accumulate(current - np.arange(len(current))) + np.arange(len(current))
        previous = current
    return int(previous[-1])


@dataclasses.dataclass(frozen=True)
class RevisionExample:
    """Earlier attempts (oldest first) and the answer the revision model should give."""

    attempts: list[str]
    target: str


def revision_examples(
    answers: Sequence[str],
    correct: Sequence[bool],
    rng: np.random.Generator,
    max_examples: int | None = None,
) -> list[RevisionExample]:
    """Examples from one question's sampled answers, one per correct answer (at most
    ``max_examples``, chosen at random)."""
    right = [a for a, ok in zip(answers, correct, strict=True) if ok]
    wrong = [a for a, ok in zip(answers, correct, strict=True) if not ok]
    if max_examples is not None and len(right) > max_examples:
        right = [right[i] for i in rng.choice(len(right), max_examples, replace=False)]
    distances: dict[str, list[int]] = {}
    examples = []
    for target in right:
        count = min(int(rng.integers(MAX_CONTEXT_ATTEMPTS + 1)), len(wrong))
        if count == 0:
            examples.append(RevisionExample([], target))
            continue
        if target not in distances:
            distances[target] = [edit_distance(target, w) for w in wrong]
        closest = int(np.argmin(distances[target]))
        others = [i for i in range(len(wrong)) if i != closest]
        chosen = [int(i) for i in rng.permutation(others)[: count - 1]]
        examples.append(RevisionExample([wrong[i] for i in [*chosen, closest]], target))
    return examples
