"""ttc_jax: compute-optimal test-time scaling of language models in JAX/Flax."""

from ttc_jax.engine.engine import Engine, default_engine
from ttc_jax.engine.generate import Sample, generate
from ttc_jax.errors import (
    CheckpointError,
    ConfigFieldError,
    CorruptCheckpointError,
    MissingTensorError,
    ShapeMismatchError,
    UnexpectedTensorError,
    UnsupportedArchitectureError,
    UnsupportedQuantizationError,
)
from ttc_jax.gemma3_270m import gemma3_270m_path
from ttc_jax.lm import LanguageModel, load_lm
from ttc_jax.models.config import ModelConfig
from ttc_jax.prm import PRM, load_prm
from ttc_jax.sharding import ShardingRules, make_mesh
from ttc_jax.smollm2 import smollm2_path

__all__ = [
    "PRM",
    "CheckpointError",
    "ConfigFieldError",
    "CorruptCheckpointError",
    "Engine",
    "LanguageModel",
    "MissingTensorError",
    "ModelConfig",
    "Sample",
    "ShapeMismatchError",
    "ShardingRules",
    "SolveResult",
    "UnexpectedTensorError",
    "UnsupportedArchitectureError",
    "UnsupportedQuantizationError",
    "default_engine",
    "gemma3_270m_path",
    "generate",
    "load_lm",
    "load_prm",
    "make_mesh",
    "smollm2_path",
    "solve",
]


def __getattr__(name: str):
    # `solve` stands on the study and ml-collections, which the benchmark machines lack;
    # importing it on first use keeps `import ttc_jax` light there.
    if name in ("solve", "SolveResult"):
        from ttc_jax import solver

        return getattr(solver, name)
    raise AttributeError(f"module 'ttc_jax' has no attribute {name!r}")
