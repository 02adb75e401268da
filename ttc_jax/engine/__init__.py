"""Inference engine: shared-prefix KV cache, sampling, stop strings and the decode loop."""

from ttc_jax.engine.decode import DecodeState, Finish, StepOutput
from ttc_jax.engine.engine import Engine, default_engine
from ttc_jax.engine.generate import Sample, generate
from ttc_jax.engine.sampling import SamplingConfig

__all__ = [
    "DecodeState",
    "Engine",
    "Finish",
    "Sample",
    "SamplingConfig",
    "StepOutput",
    "default_engine",
    "generate",
]
