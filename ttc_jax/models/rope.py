"""Rotary position embeddings, with the numerics of transformers' Llama implementation.

Inverse frequencies are computed once on the host in float64 and rounded to float32; the angle
``position * inv_freq`` is then formed in float32 exactly as transformers does, so logits agree
to float32 rounding even at long positions (a bfloat16 angle would be off by whole radians).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ttc_jax.models.config import LinearRopeScaling, ModelConfig


def inverse_frequencies(cfg: ModelConfig, local: bool = False) -> np.ndarray:
    """[head_dim // 2] float32 inverse frequencies with the global base and scaling, or
    (``local``, where the config has one) the sliding layers' own base, unscaled."""
    local = local and cfg.local_rope_theta is not None
    theta = cfg.local_rope_theta if local else cfg.rope_theta
    exponents = np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim
    inv_freq = (1.0 / theta**exponents).astype(np.float32).astype(np.float64)
    if isinstance(cfg.rope_scaling, LinearRopeScaling) and not local:
        # Divided in float32, as transformers does.
        inv_freq = inv_freq.astype(np.float32) / np.float32(cfg.rope_scaling.factor)
    elif cfg.rope_scaling is not None and not local:
        inv_freq = _llama3_scaled(inv_freq, cfg)
    if cfg.rope_freq_factors is not None:
        inv_freq = inv_freq / np.asarray(cfg.rope_freq_factors, dtype=np.float64)
    return inv_freq.astype(np.float32)


def _llama3_scaled(inv_freq: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Long wavelengths divided by ``factor``, short ones kept, a smooth blend between."""
    s = cfg.rope_scaling
    old_context = s.original_max_position_embeddings
    low_freq_wavelen = old_context / s.low_freq_factor
    high_freq_wavelen = old_context / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled)


def rope_angles(positions: jnp.ndarray, inv_freq: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin of ``positions * inv_freq``: [..., T] int -> two [..., T, head_dim] float32."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotates x [B, T, H, D] by angles [B, T, D] (the "rotate half" convention)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos = cos[..., None, :].astype(x.dtype)
    sin = sin[..., None, :].astype(x.dtype)
    return x * cos + rotated * sin
