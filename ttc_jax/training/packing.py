"""Training examples and their packing into fixed-shape batches.

Sequences of the embedded world are short (20-80 tokens) and of very different lengths, so
padding each to the longest would spend most of a batch on padding. Examples are packed
instead: several go into one row, each with its own segment id and positions that restart
at 0, and attention is masked so that no token sees another example (`packed_mask`). Every
batch has the same shape, so a training run compiles one program.

An `Example` carries per-token targets and loss weights: next-token ids for language-model
training, soft labels for value training. Only positions with a weight count in a loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Segment id of padding: no example has it, so padding attends to and is seen by nothing.
PADDING_SEGMENT = 0


@dataclasses.dataclass(frozen=True)
class Example:
    """One training sequence: inputs, a target per input position and a loss weight."""

    tokens: np.ndarray  # [T] int32
    targets: np.ndarray  # [T] int32 next-token ids, or float32 labels
    weights: np.ndarray  # [T] float32; 0 where the position is not trained

    def __post_init__(self):
        if not len(self.tokens) == len(self.targets) == len(self.weights):
            raise ValueError("tokens, targets and weights must have the same length")

    def __len__(self) -> int:
        return len(self.tokens)


def lm_example(prompt_ids: Sequence[int], target_ids: Sequence[int], eos_id: int) -> Example:
    """Next-token prediction of ``target_ids`` then EOS after ``prompt_ids`` (not trained)."""
    ids = np.asarray([*prompt_ids, *target_ids, eos_id], np.int32)
    weights = np.zeros(len(ids) - 1, np.float32)
    weights[len(prompt_ids) - 1 :] = 1.0
    return Example(ids[:-1], ids[1:], weights)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
    """Packed rows [B, L]: tokens, targets, weights, segment ids and positions."""

    tokens: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    segments: np.ndarray
    positions: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int((self.segments != PADDING_SEGMENT).sum())


def pack(
    examples: Sequence[Example], start: int, num_rows: int, row_length: int, target_dtype
) -> tuple[Batch, int]:
    """First-fit packing of ``examples[start:]``, in order, into ``num_rows`` rows of
    ``row_length`` tokens.

    Returns the batch and the index of the first example left out: packing stops at the first
    example that fits in no row. An example longer than a row is an error.
    """
    tokens = np.zeros((num_rows, row_length), np.int32)
    targets = np.zeros((num_rows, row_length), target_dtype)
    weights = np.zeros((num_rows, row_length), np.float32)
    segments = np.full((num_rows, row_length), PADDING_SEGMENT, np.int32)
    positions = np.zeros((num_rows, row_length), np.int32)
    used = np.zeros(num_rows, np.int64)
    index = start
    while index < len(examples):
        example = examples[index]
        size = len(example)
        if size > row_length:
            raise ValueError(f"an example of {size} tokens is longer than a row ({row_length})")
        free = np.flatnonzero(used + size <= row_length)
        if not len(free):
            break
        row, offset = free[0], used[free[0]]
        span = slice(offset, offset + size)
        tokens[row, span] = example.tokens
        targets[row, span] = example.targets
        weights[row, span] = example.weights
        segments[row, span] = index - start + 1
        positions[row, span] = np.arange(size)
        used[row] += size
        index += 1
    return Batch(tokens, targets, weights, segments, positions), index


def pack_all(
    examples: Sequence[Example], num_rows: int, row_length: int, target_dtype
) -> list[Batch]:
    """Every example packed, in order, into as many batches as it takes."""
    batches, start = [], 0
    while start < len(examples):
        batch, start = pack(examples, start, num_rows, row_length, target_dtype)
        batches.append(batch)
    return batches


def packed_mask(segments: jnp.ndarray) -> jnp.ndarray:
    """[B, L] segment ids -> [B, L, L] attention mask: causal, within one example only."""
    length = segments.shape[-1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    same = segments[:, :, None] == segments[:, None, :]
    return causal[None] & same & (segments[:, None, :] != PADDING_SEGMENT)
