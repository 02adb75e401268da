"""Flax decoder models, their configs and strict checkpoint loaders."""

from ttc_jax.models.config import ModelConfig, RopeScaling
from ttc_jax.models.transformer import Transformer

__all__ = ["ModelConfig", "RopeScaling", "Transformer"]
