"""Process reward models: published PRM formats, score heads, strict loading and scoring."""

from ttc_jax.prm.kinds import FORMATS, PRMFormat
from ttc_jax.prm.loading import load_prm
from ttc_jax.prm.scorer import PRM, PRMState

__all__ = ["FORMATS", "PRM", "PRMFormat", "PRMState", "load_prm"]
