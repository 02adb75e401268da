"""The one contract for selecting samples: indices [questions, N'] -> padded, checked indices.

Search keeps, copies or drops samples of each question (beam selection, fan-out to N' != N
samples) by giving, for every question b, the sample each new slot n' continues:
``indices[b, n']``. The engine's decode state and the PRM's scoring state take these indices
the same way, through `padded_indices`.
"""

from __future__ import annotations

import numpy as np


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
