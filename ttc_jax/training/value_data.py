"""Value-head training examples, tokenized exactly as a ``ttc_value`` PRM scores them.

The token ids come from `ttc_jax.prm.kinds.TtcValueFormat` itself (``question_ids`` and
``step_ids``), so a trained PRM reads the same ids in training and in `PRM.score`; each
step's label sits at the position the format scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ttc_jax.prm.kinds import TtcValueFormat
from ttc_jax.training.packing import Example


def value_example(
    fmt: TtcValueFormat, question: str, steps: Sequence[str], labels: Sequence[float]
) -> Example:
    """One candidate: its ids, its labels at the scored positions, weight 1 there only."""
    if len(steps) != len(labels) or not steps:
        raise ValueError(f"{len(steps)} steps but {len(labels)} labels; need one per step")
    ids = list(fmt.question_ids(question))
    scored = []
    for index, step in enumerate(steps):
        step_ids, offset = fmt.step_ids(step, index)
        scored.append(len(ids) + offset)
        ids.extend(step_ids)
    targets = np.zeros(len(ids), np.float32)
    weights = np.zeros(len(ids), np.float32)
    targets[scored] = labels
    weights[scored] = 1.0
    return Example(np.asarray(ids, np.int32), targets, weights)
