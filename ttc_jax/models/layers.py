"""Flax NNX building blocks of a decoder layer: the Llama block and its family variants
(Qwen3's and Gemma 3's q/k norms, Gemma's unit-offset norms, sandwich norms and GeGLU).

Weights are stored in einsum-friendly layouts (``o_proj`` is [heads, head_dim, embed], not
torch's [embed, heads * head_dim]) and every parameter carries ``logical_axes`` metadata that
`ttc_jax.sharding` maps onto the device mesh.

Projections that read the same input are stored fused (query, key and value in ``qkv_proj``;
gate and up in ``gate_up_proj``): one matrix product each. Kept apart, XLA's GPU compiler
merges them itself by concatenating the weights, and inside a decode loop it does so again at
every step (traced on an H100 for Llama-3.2-1B at 256 samples: a 10 us concatenation of the
query, key and value weights per layer and step, and a gate/up product at 1.4 TB/s).

Attention itself is not here: a layer exposes `Attention.project_qkv` and
`Attention.project_out`, and the caller decides how queries meet keys (a dense causal mask for
a full forward pass, a KV cache with a shared prompt prefix for sampling), so one set of
weights and projections serves every attention strategy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ttc_jax.models.config import ModelConfig
from ttc_jax.models.rope import apply_rope

# transformers' default initializer_range: random models have realistic activation scales.
INIT_STD = 0.02


def random_param(rngs: nnx.Rngs, shape, axes, dtype, std=INIT_STD) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), shape, dtype)
    return nnx.Param(value, logical_axes=axes, init="normal")


def zeros_param(shape, axes, dtype) -> nnx.Param:
    return nnx.Param(jnp.zeros(shape, dtype), logical_axes=axes, init="zeros")


class RMSNorm(nnx.Module):
    """Root-mean-square norm computed in float32, as transformers does for every dtype.

    Llama's casts the normed input back, then scales by the weight; Gemma's (``unit_offset``)
    scales by 1 + weight in float32 and casts after: in bfloat16 the two orders round
    differently, so each family keeps its own. A Gemma weight of 0 is the identity.
    """

    def __init__(self, dim: int, eps: float, dtype, unit_offset: bool = False, axis="embed"):
        init = "zeros" if unit_offset else "ones"
        fill = jnp.zeros if unit_offset else jnp.ones
        self.scale = nnx.Param(fill((dim,), dtype), logical_axes=(axis,), init=init)
        self.eps = eps
        self.unit_offset = unit_offset

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        if self.unit_offset:
            return (normed * (1.0 + self.scale[...].astype(jnp.float32))).astype(x.dtype)
        return self.scale[...] * normed.astype(x.dtype)


def norm(cfg: ModelConfig, dim: int, dtype, axis="embed") -> RMSNorm:
    """An RMSNorm of the family's kind."""
    return RMSNorm(dim, cfg.rms_norm_eps, dtype, unit_offset=cfg.norm_unit_offset, axis=axis)


class Attention(nnx.Module):
    """Grouped-query attention projections (optional q/k/v and output biases, optional
    per-head q/k norms) with RoPE.

    ``qkv_proj`` is [embed, kv_heads, group + 2, head_dim]: for each kv head, its ``group``
    query heads (query head h belongs to kv head h // group, as in transformers), then its key,
    then its value. Splitting it over kv heads keeps every group on one device.
    """

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        e, h, k, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        slots = cfg.q_per_kv + 2
        self.qkv_proj = random_param(
            rngs, (e, k, slots, d), ("embed", "kv_heads", "qkv_slots", "head_dim"), dtype
        )
        self.o_proj = random_param(rngs, (h, d, e), ("heads", "head_dim", "embed"), dtype)
        if cfg.qkv_bias:
            self.qkv_bias = zeros_param((k, slots, d), ("kv_heads", "qkv_slots", "head_dim"), dtype)
        if cfg.o_bias:
            self.o_bias = zeros_param((e,), ("embed",), dtype)
        if cfg.qk_norm:
            self.q_norm = norm(cfg, d, dtype, axis="head_dim")
            self.k_norm = norm(cfg, d, dtype, axis="head_dim")
        self.has_qkv_bias = cfg.qkv_bias
        self.has_o_bias = cfg.o_bias
        self.has_qk_norm = cfg.qk_norm
        # Every attention implementation scales logits by head_dim ** -0.5; a family that
        # scales by query_pre_attn_scalar ** -0.5 (Gemma) has its queries rescaled to match.
        scalar = cfg.query_pre_attn_scalar
        self.query_scale = None if scalar in (None, d) else (d / scalar) ** 0.5

    def project_qkv(self, x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray):
        """x [B, T, E] -> q [B, T, H, D], k and v [B, T, K, D]; q and k rotated."""
        fused = jnp.einsum("bte,eksd->btksd", x, self.qkv_proj[...])
        if self.has_qkv_bias:
            fused = fused + self.qkv_bias[...]
        b, t, _, slots, d = fused.shape
        group = slots - 2
        q = fused[:, :, :, :group].reshape(b, t, -1, d)
        k, v = fused[:, :, :, group], fused[:, :, :, group + 1]
        if self.has_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, cos, sin)
        if self.query_scale is not None:
            q = q * jnp.asarray(self.query_scale, q.dtype)
        return q, apply_rope(k, cos, sin), v

    def project_out(self, attended: jnp.ndarray) -> jnp.ndarray:
        """Attention output [B, T, H, D] -> [B, T, E]."""
        b, t, h, d = attended.shape
        # One contracted axis of H * D: with (h, d) contracted separately XLA may pick a
        # layout for the attention output that makes it transpose the whole weight per call.
        weight = self.o_proj[...].reshape(h * d, -1)
        out = jnp.einsum("btf,fe->bte", attended.reshape(b, t, h * d), weight)
        if self.has_o_bias:
            out = out + self.o_bias[...]
        return out


class MLP(nnx.Module):
    """Gated feed-forward: down(act(gate(x)) * up(x)); ``gate_up_proj`` is [embed, 2, mlp].

    act is SiLU (SwiGLU) or, for Gemma, GELU with transformers' tanh approximation (GeGLU).
    """

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        e, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_up_proj = random_param(rngs, (e, 2, f), ("embed", "gate_up", "mlp"), dtype)
        self.down_proj = random_param(rngs, (f, e), ("mlp", "embed"), dtype)
        if cfg.mlp_bias:
            self.gate_up_bias = zeros_param((2, f), ("gate_up", "mlp"), dtype)
            self.down_bias = zeros_param((e,), ("embed",), dtype)
        self.has_bias = cfg.mlp_bias
        self.gelu = cfg.mlp_activation == "gelu_tanh"

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        gate_up = jnp.einsum("bte,egf->btgf", x, self.gate_up_proj[...])
        if self.has_bias:
            gate_up = gate_up + self.gate_up_bias[...]
        gate = gate_up[:, :, 0]
        activated = jax.nn.gelu(gate, approximate=True) if self.gelu else jax.nn.silu(gate)
        hidden = activated * gate_up[:, :, 1]
        out = jnp.einsum("btf,fe->bte", hidden, self.down_proj[...])
        if self.has_bias:
            out = out + self.down_bias[...]
        return out


class DecoderLayer(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)); with sandwich norms (Gemma)
    each branch's output is normed too: x + norm(attn(norm(x))), then + norm(mlp(norm(x))).

    ``post_attn_norm`` is the norm before the MLP (Llama's ``post_attention_layernorm``,
    Gemma's ``pre_feedforward_layernorm``); ``attn_out_norm`` and ``mlp_out_norm`` are
    Gemma's ``post_attention_layernorm`` and ``post_feedforward_layernorm``.

    Split in two halves around attention so that callers can plug in their own attention
    (see the module docstring): ``q, k, v = layer.attention_inputs(x, cos, sin)``, attend,
    then ``x = layer.finish(x, attended)``.
    """

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        self.input_norm = norm(cfg, cfg.hidden_size, dtype)
        self.attn = Attention(cfg, dtype, rngs)
        self.post_attn_norm = norm(cfg, cfg.hidden_size, dtype)
        self.mlp = MLP(cfg, dtype, rngs)
        if cfg.sandwich_norms:
            self.attn_out_norm = norm(cfg, cfg.hidden_size, dtype)
            self.mlp_out_norm = norm(cfg, cfg.hidden_size, dtype)
        self.sandwich = cfg.sandwich_norms

    def attention_inputs(self, x, cos, sin):
        return self.attn.project_qkv(self.input_norm(x), cos, sin)

    def finish(self, x: jnp.ndarray, attended: jnp.ndarray) -> jnp.ndarray:
        attn_out = self.attn.project_out(attended)
        if self.sandwich:
            attn_out = self.attn_out_norm(attn_out)
        x = x + attn_out
        mlp_out = self.mlp(self.post_attn_norm(x))
        if self.sandwich:
            mlp_out = self.mlp_out_norm(mlp_out)
        return x + mlp_out
