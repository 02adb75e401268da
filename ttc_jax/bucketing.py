"""Padded sizes for shapes that reach compiled programs.

Every distinct shape compiles a new program (seconds each), so lengths and counts are padded
to a few sizes. Sequence lengths go to powers of two (then multiples of 512); counts of
questions and of samples go to finer steps (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), since every
padding row costs a full row of compute in every decode step.
"""

from __future__ import annotations

# Shortest padded sequence length: below this, bucketing would only add programs.
MIN_SEQ_BUCKET = 16
# Above this, lengths round up to multiples of it instead of to powers of two: a 4-shot
# prompt of 1.5k tokens would otherwise pad to 2k, a third more prefill and attention work.
LINEAR_BUCKET = 512


def bucket_length(n: int, minimum: int = MIN_SEQ_BUCKET) -> int:
    """Padded size for n: the next power of two up to 512, then the next multiple of 512.

    Bounds the number of compiled programs (a handful per study) while wasting at most a
    third of a long prompt.
    """
    if n > LINEAR_BUCKET:
        return round_up(n, LINEAR_BUCKET)
    return max(minimum, 1 << max(0, n - 1).bit_length())


def bucket_count(n: int) -> int:
    """Padded size for a count of rows: the next of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...
    (powers of two and 1.5 times them), so at most a third of the rows are padding."""
    if n < 1:
        raise ValueError(f"a count must be >= 1, got {n}")
    power = 1 << (n - 1).bit_length()
    three_quarters = power // 4 * 3
    return three_quarters if n <= three_quarters and power >= 4 else power


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
