"""Search and revisions over the step-wise engine, and how their candidates are aggregated."""

from ttc_jax.search.aggregation import SELECTIONS, STEP_AGGREGATIONS, candidate_score, select

__all__ = ["SELECTIONS", "STEP_AGGREGATIONS", "candidate_score", "select"]
