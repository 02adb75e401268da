"""Revision training data: a correct answer as the target, earlier wrong attempts as context.

As in the paper: for each question the policy samples many answers (unparsable ones are
dropped); for each correct answer, a number of incorrect answers k ~ Uniform{0..4} (fewer if
fewer exist) becomes its context, the incorrect answer closest to the correct one by character
edit distance last, the others drawn at random in random order. With k = 0 the revision model
learns first attempts too. The context is laid out by `FewShotPrompt.revision_text`, the one
layout revision training, revision search and the revision verifier share.

`context="any"` departs from the paper: the context attempts are drawn from all the other
samples, correct and incorrect alike, in random order, as a revision chain's earlier attempts
are at inference. A model that only ever saw incorrect attempts in context can learn the
shortcut "the answer is none of those above", which turns a chain's correct attempts wrong.

A ``reference`` solution as the target departs from it too: a sampled correct answer carries
the sampling temperature's spread of wordings, and a small model trained on many of them
samples more loosely than the policy it started from, first attempts included.

`keep="right"` (with `context="any"`) departs further: when the last context attempt is
right, it becomes the target, word for word: the examples teach copying a right attempt (a
copy can be sampled with more confidence than a fresh solution) and rewriting a wrong one.
`keep="any"` makes every last attempt the target, right or wrong: no recipe for revisions,
but a test of whether a model can learn to copy an earlier attempt at all, since a wrong
attempt's slips can only be predicted by reading them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

MAX_CONTEXT_ATTEMPTS = 4
# What the context attempts are drawn from: the incorrect samples (the paper) or all of them.
CONTEXTS = ("incorrect", "any")
# What the revision model learns to write: a correct sample (the paper), the reference, the
# last attempt when it is right and the reference otherwise ("keep"), or the last attempt
# whatever its grade ("copy", a test of copying; the reference when there is no attempt).
TARGETS = ("sample", "reference", "keep", "copy")
# Which last context attempts replace the target: none, the right ones, or any.
KEEPS = ("none", "right", "any")


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
    context: str = "incorrect",
    reference: str | None = None,
    keep: str = "none",
) -> list[RevisionExample]:
    """Examples from one question's sampled answers, with context attempts drawn as
    ``context`` says.

    The targets are the correct answers (at most ``max_examples``, chosen at random), or,
    given a ``reference`` solution, that solution ``max_examples`` times (once per answer
    without a limit), each time after a fresh draw of context. With ``keep="right"`` a
    right last attempt replaces the target; with ``keep="any"``, any last attempt.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {KEEPS}, got {keep!r}")
    if keep != "none" and context != "any":
        raise ValueError(f"keep={keep!r} needs context='any': only its draws keep a last attempt")
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} grades")
    if reference is not None:
        count = len(answers) if max_examples is None else max_examples
        targets = [(reference, None)] * count
    else:
        right = [i for i, ok in enumerate(correct) if ok]
        if max_examples is not None and len(right) > max_examples:
            right = [right[i] for i in rng.choice(len(right), max_examples, replace=False)]
        targets = [(answers[i], i) for i in right]
    if context == "any":
        examples = [_any_context(answers, target, index, rng) for target, index in targets]
        if keep != "none":
            kept = {a for a, ok in zip(answers, correct, strict=True) if ok or keep == "any"}
            examples = [_kept(e, kept) for e in examples]
        return examples
    wrong = [a for a, ok in zip(answers, correct, strict=True) if not ok]
    distances: dict[str, list[int]] = {}
    examples = []
    for target, _ in targets:
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


def _any_context(
    answers: Sequence[str], target: str, index: int | None, rng: np.random.Generator
) -> RevisionExample:
    """``target`` after up to four answers other than the one at ``index``, in random order."""
    others = [i for i in range(len(answers)) if i != index]
    count = min(int(rng.integers(MAX_CONTEXT_ATTEMPTS + 1)), len(others))
    chosen = [int(i) for i in rng.permutation(others)[:count]]
    return RevisionExample([answers[i] for i in chosen], target)


def _kept(example: RevisionExample, kept: set[str]) -> RevisionExample:
    """``example`` with its last attempt as the target when that attempt is in ``kept``."""
    if example.attempts and example.attempts[-1] in kept:
        return RevisionExample(example.attempts, example.attempts[-1])
    return example
