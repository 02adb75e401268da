"""The decoder-only transformer (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5, Qwen3, Gemma 3) as a
Flax NNX module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ttc_jax.models.attention import causal_mask, dense_attention, window_mask
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.layers import DecoderLayer, norm, random_param
from ttc_jax.models.rope import inverse_frequencies, rope_angles

# attend(layer_index, layer_cache, q [B, T, H, D], k [B, T, K, D], v [B, T, K, D])
#   -> (out [B, T, H, D], the layer's new cache)
# A layer's cache is whatever the caller keeps per layer (a KV cache's keys and values, or
# None for a forward pass that keeps nothing); attention returns it instead of mutating state
# captured from outside, so the layers compose as a pure function.
Attend = Callable[[int, Any, jnp.ndarray, jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, Any]]


class Transformer(nnx.Module):
    """Token embedding, ``num_layers`` decoder layers, final norm and LM head (maybe tied)."""

    def __init__(self, cfg: ModelConfig, dtype=jnp.float32, *, rngs: nnx.Rngs):
        self.config = cfg
        self.embed = random_param(
            rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), dtype
        )
        self.layers = nnx.List([DecoderLayer(cfg, dtype, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = norm(cfg, cfg.hidden_size, dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = random_param(
                rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), dtype
            )

    def rope(self, positions: jnp.ndarray, local: bool = False):
        """cos and sin [B, T, head_dim] for integer positions [B, T], with the global base or
        (``local``) the sliding layers' own, `ModelConfig.local_rope_theta`."""
        return rope_angles(positions, inverse_frequencies(self.config, local))

    def embed_tokens(self, tokens: jnp.ndarray) -> jnp.ndarray:
        x = jnp.take(self.embed[...], tokens, axis=0)
        if self.config.scale_embeddings:
            # The factor is rounded to the model dtype first, as transformers does for Gemma.
            x = x * jnp.asarray(self.config.hidden_size**0.5, x.dtype)
        return x

    def run_layers(
        self, tokens, positions, attend: Attend, caches: Sequence[Any] | None = None
    ) -> tuple[jnp.ndarray, tuple]:
        """tokens [B, T] at RoPE positions [B, T] -> (final-normed hidden states [B, T, E],
        each layer's new cache).

        ``attend(layer_index, layer_cache, q, k, v)`` decides what each query sees and
        returns the layer's output and new cache: `hidden_states` passes a dense causal mask
        and keeps nothing, the engine reads and writes its KV cache. Either must honour the
        layer's window, `ModelConfig.window`. ``caches``: one per layer (default None each).
        """
        num_layers = self.config.num_layers
        caches = (None,) * num_layers if caches is None else tuple(caches)
        if len(caches) != num_layers:
            raise ValueError(f"caches: {len(caches)} given for {num_layers} layers")
        x = self.embed_tokens(tokens)
        local = [self.config.local_rope(i) for i in range(num_layers)]
        angles = {kind: self.rope(positions, kind) for kind in set(local)}
        new_caches = []
        for index, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{index}"):
                q, k, v = layer.attention_inputs(x, *angles[local[index]])
                out, cache = attend(index, caches[index], q, k, v)
                new_caches.append(cache)
                x = layer.finish(x, out)
        return self.final_norm(x), tuple(new_caches)

    def hidden_states(self, tokens, positions, key_valid) -> jnp.ndarray:
        """Full causal forward pass over tokens [B, T] -> hidden states [B, T, E].

        ``key_valid`` [B, T] marks real tokens (False for padding, which no query attends to).
        A sliding layer's query sees only keys fewer than its window of positions back.
        """
        full = causal_mask(key_valid)
        windows = {self.config.window(i) for i in range(self.config.num_layers)}
        masks = {
            w: full if w is None else full & window_mask(positions, positions, w) for w in windows
        }

        def attend(layer, _, q, k, v):
            return dense_attention(q, k, v, masks[self.config.window(layer)]), None

        return self.run_layers(tokens, positions, attend)[0]

    def logits(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """Hidden states [B, T, E] -> float32 logits [B, T, V] (soft-capped where the config
        says so)."""
        if self.config.tie_word_embeddings:
            logits = jnp.einsum(
                "bte,ve->btv", hidden, self.embed[...], preferred_element_type=jnp.float32
            )
        else:
            logits = jnp.einsum(
                "bte,ev->btv", hidden, self.lm_head[...], preferred_element_type=jnp.float32
            )
        cap = self.config.final_logit_softcapping
        return logits if cap is None else cap * jnp.tanh(logits / cap)
