"""The decoder-only transformer (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5) as a Flax NNX module."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ttc_jax.models.attention import causal_mask, dense_attention
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.layers import DecoderLayer, RMSNorm, random_param
from ttc_jax.models.rope import inverse_frequencies, rope_angles

# attend(layer_index, q [B, T, H, D], k [B, T, K, D], v [B, T, K, D]) -> [B, T, H, D]
Attend = Callable[[int, jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


class Transformer(nnx.Module):
    """Token embedding, ``num_layers`` decoder layers, final norm and LM head (maybe tied)."""

    def __init__(self, cfg: ModelConfig, dtype=jnp.float32, *, rngs: nnx.Rngs):
        self.config = cfg
        self.embed = random_param(
            rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), dtype
        )
        self.layers = nnx.List([DecoderLayer(cfg, dtype, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = random_param(
                rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), dtype
            )

    def rope(self, positions: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """cos and sin [B, T, head_dim] for integer positions [B, T]."""
        return rope_angles(positions, inverse_frequencies(self.config))

    def embed_tokens(self, tokens: jnp.ndarray) -> jnp.ndarray:
        return jnp.take(self.embed[...], tokens, axis=0)

    def run_layers(self, tokens, positions, attend: Attend) -> jnp.ndarray:
        """tokens [B, T] at RoPE positions [B, T] -> final-normed hidden states [B, T, E].

        ``attend(layer_index, q, k, v)`` decides what each query sees: `hidden_states` passes
        a dense causal mask, the engine passes one that reads and writes its KV cache.
        """
        x = self.embed_tokens(tokens)
        cos, sin = self.rope(positions)
        for index, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{index}"):
                q, k, v = layer.attention_inputs(x, cos, sin)
                x = layer.finish(x, attend(index, q, k, v))
        return self.final_norm(x)

    def hidden_states(self, tokens, positions, key_valid) -> jnp.ndarray:
        """Full causal forward pass over tokens [B, T] -> hidden states [B, T, E].

        ``key_valid`` [B, T] marks real tokens (False for padding, which no query attends to).
        """
        mask = causal_mask(key_valid)
        return self.run_layers(tokens, positions, lambda _, q, k, v: dense_attention(q, k, v, mask))

    def logits(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """Hidden states [B, T, E] -> float32 logits [B, T, V]."""
        if self.config.tie_word_embeddings:
            return jnp.einsum(
                "bte,ve->btv", hidden, self.embed[...], preferred_element_type=jnp.float32
            )
        return jnp.einsum(
            "bte,ev->btv", hidden, self.lm_head[...], preferred_element_type=jnp.float32
        )
