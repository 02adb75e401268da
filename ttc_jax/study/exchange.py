"""The FLOPs exchange: a small model with test-time compute against a larger one, at matched
total compute (PAPER.md).

Pretraining costs X = 6 N D_pretrain and inference Y = 2 N D_inference FLOPs. A model M times
larger, pretrained on the same tokens, costs M times more of both; matching the total, the
small model may spend

    M + 3 (D_pretrain / D_inference) (M - 1)

times its single-sample inference on each question, where R = D_inference / D_pretrain is how
much inference the model will serve over its life. The budget spent is the largest budget of
the study's grid within [multiple / 2, multiple]: a grid of powers of two rounds down, by at
most half. With no budget there, the point is not measured (a budget far below the matched
compute would compare the small model at a fraction of what it may spend).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

PAPER_RATIOS = (0.16, 0.79, 22.0)


def matched_multiplier(ratio: float, size_ratio: float) -> float:
    """Test-time compute (in single samples) the small model may spend at inference/
    pretraining token ratio ``ratio`` against a model ``size_ratio`` times its size."""
    if ratio <= 0 or size_ratio <= 1:
        raise ValueError(f"need ratio > 0 and size_ratio > 1, got {ratio} and {size_ratio}")
    return size_ratio + 3.0 / ratio * (size_ratio - 1.0)


@dataclasses.dataclass(frozen=True)
class ExchangePoint:
    ratio: float  # R = D_inference / D_pretrain
    multiplier: float  # matched test-time compute, in single samples
    budget: int | None  # the largest budget of the grid in [multiplier / 2, multiplier], or None
    small: dict[int, float]  # bin -> the small model's compute-optimal accuracy at ``budget``
    large: dict[int, float]  # bin -> the larger model's accuracy (one greedy sample)
    small_overall: float | None
    large_overall: float

    @property
    def winner_by_bin(self) -> dict[int, str]:
        return {
            b: "small + test-time compute" if self.small[b] > self.large[b] else "larger model"
            for b in self.small
        }


def exchange(
    ratios: Sequence[float],
    size_ratio: float,
    budgets: Sequence[int],
    small_by_bin: Mapping[int, Mapping[int, float]],
    small_overall: Mapping[int, float],
    large_by_bin: Mapping[int, float],
    large_overall: float,
) -> list[ExchangePoint]:
    """One point per R. ``small_by_bin[budget][bin]`` is the small model's compute-optimal
    accuracy (oracle bins) and ``small_overall[budget]`` over all questions."""
    points = []
    for ratio in ratios:
        multiplier = matched_multiplier(ratio, size_ratio)
        within = [b for b in budgets if multiplier / 2 <= b <= multiplier and b in small_overall]
        budget = max(within) if within else None
        points.append(
            ExchangePoint(
                ratio=ratio,
                multiplier=multiplier,
                budget=budget,
                small=dict(small_by_bin[budget]) if budget is not None else {},
                large=dict(large_by_bin),
                small_overall=small_overall.get(budget) if budget is not None else None,
                large_overall=large_overall,
            )
        )
    return points
