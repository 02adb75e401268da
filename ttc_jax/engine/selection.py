"""The one contract for selecting samples: indices [questions, N'] -> padded, checked indices.

Search keeps, copies or drops samples of each question (beam selection, fan-out to N' != N
samples) by giving, for every question b, the sample each new slot n' continues:
``indices[b, n']``. The engine's decode state and the PRM's scoring state take these indices
the same way, through `padded_indices`.
"""

from __future__ import annotations

import numpy as np

from ttc_jax.bucketing import bucket_count


def padded_indices(indices, rows: int, num_samples: int) -> np.ndarray:
    """``indices`` [Q, N'] checked (integers in [0, num_samples), 1 <= Q <= rows, N' >= 1)
    and padded to [rows, N'] int32; rows past Q (padding questions) follow sample 0."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or not 1 <= indices.shape[0] <= rows or indices.shape[1] < 1:
        raise ValueError(
            f"indices must be [questions (at most {rows}), samples], got shape {indices.shape}"
        )
    if not np.issubdtype(indices.dtype, np.integer) or (
        indices.min() < 0 or indices.max() >= num_samples
    ):
        raise ValueError(f"indices must be integers in [0, {num_samples})")
    padded = np.zeros((rows, indices.shape[1]), np.int32)
    padded[: indices.shape[0]] = indices
    return padded


def moved_mask(moved, rows: int, num_samples: int) -> np.ndarray:
    """[rows, num_samples] bool: the samples that select, from ``moved``: question indices
    (every sample of those questions), or a [questions, num_samples] bool mask of samples (a
    DVTS subtree selects while its question's other subtrees decode on)."""
    moved = np.asarray(moved)
    mask = np.zeros((rows, num_samples), bool)
    if moved.dtype == bool:
        if moved.ndim != 2 or moved.shape[0] > rows or moved.shape[1] != num_samples:
            raise ValueError(
                f"a mask of moved samples must be [questions (at most {rows}), {num_samples}] "
                f"booleans, got shape {moved.shape}"
            )
        mask[: moved.shape[0]] = moved
        return mask
    questions = np.unique(moved.astype(int).reshape(-1))
    if questions.size and (questions.min() < 0 or questions.max() >= rows):
        raise ValueError(f"moved questions must be indices in [0, {rows})")
    mask[questions] = True
    return mask


def moved_rows(padded: np.ndarray, moved, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and target sample rows (question major) of the samples ``moved`` lists (see
    `moved_mask`) under ``padded`` [rows, N] indices, padded to a `bucket_count` of rows
    with targets past the last row (dropped), so that few shapes reach compiled programs."""
    n = padded.shape[1]
    mask = moved_mask(moved, rows, n)
    question, sample = np.nonzero(mask)
    targets = question * n + sample
    sources = question * n + padded[question, sample]
    size = bucket_count(max(1, targets.size))
    pad = size - targets.size
    return (
        np.pad(sources, (0, pad)).astype(np.int32),
        np.pad(targets, (0, pad), constant_values=rows * n).astype(np.int32),
    )
