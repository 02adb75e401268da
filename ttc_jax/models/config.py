"""Static model configuration, read from a Hugging Face ``config.json`` or GGUF metadata.

`ModelConfig` is a frozen, hashable dataclass: jitted code takes it as a static argument, so
one compiled program serves every call with the same architecture. Families differ from the
Llama block by a handful of switches (q/k norms, Gemma's norms and GeGLU, sliding-window
layers with their own RoPE base); docs/families.md lists them per family.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from ttc_jax.errors import ConfigFieldError, UnsupportedArchitectureError

log = logging.getLogger(__name__)

# model_type values of the decoder-only families this package implements. ``gemma3`` is the
# multimodal checkpoint, read for its text decoder (``text_config``).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
MULTIMODAL_MODEL_TYPES = {"gemma3": "gemma3_text"}
MLP_ACTIVATIONS = ("silu", "gelu_tanh")
# transformers' names of the activations above.
_HF_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}
_LAYER_TYPES = {"sliding_attention": True, "full_attention": False}


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3 style frequency-dependent RoPE scaling (``rope_type == "llama3"``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class LinearRopeScaling:
    """Positions divided by ``factor`` (``rope_type == "linear"``, Gemma 3's global layers)."""

    factor: float


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Llama/Mistral/Qwen2/Qwen3/Gemma 3-family decoder-only transformer."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # On sliding layers that have their own base (`local_rope_theta`), no scaling applies.
    rope_scaling: RopeScaling | LinearRopeScaling | None = None
    # Per-frequency divisors stored by llama.cpp as ``rope_freqs.weight`` (Llama 3 GGUF files).
    rope_freq_factors: tuple[float, ...] | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    # Sliding layers attend to the last ``sliding_window`` positions only (their own included).
    sliding_window: int | None = None
    # Which layers slide; None with a window means every layer (Mistral).
    sliding_layers: tuple[bool, ...] | None = None
    # RoPE base of the sliding layers, where it differs from `rope_theta` (Gemma 3).
    local_rope_theta: float | None = None
    # Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
    qk_norm: bool = False
    # Gemma's RMSNorm: scale by (1 + weight), both in float32, then cast.
    norm_unit_offset: bool = False
    # Gemma's extra norms on the attention and MLP outputs, before each residual sum.
    sandwich_norms: bool = False
    mlp_activation: str = "silu"  # one of MLP_ACTIVATIONS: SwiGLU or GeGLU (tanh GELU)
    # Embeddings multiplied by sqrt(hidden_size), rounded to the model dtype (Gemma).
    scale_embeddings: bool = False
    # Attention logits scaled by query_pre_attn_scalar ** -0.5 instead of head_dim ** -0.5.
    query_pre_attn_scalar: float | None = None
    # Logits become cap * tanh(logits / cap) (Gemma 2; null in Gemma 3 configs).
    final_logit_softcapping: float | None = None
    model_type: str = "llama"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"model_type {self.model_type!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.mlp_activation not in MLP_ACTIVATIONS:
            raise UnsupportedArchitectureError(
                f"MLP activation {self.mlp_activation!r} is not supported; "
                f"supported: {', '.join(MLP_ACTIVATIONS)}"
            )
        if self.sliding_window is not None and not _is_positive_int(self.sliding_window):
            raise ConfigFieldError(
                f"sliding_window must be a positive integer or null, got {self.sliding_window!r}"
            )
        if self.sliding_layers is not None and len(self.sliding_layers) != self.num_layers:
            raise ConfigFieldError(
                f"layer_types names {len(self.sliding_layers)} types for {self.num_layers} layers"
            )

    @property
    def q_per_kv(self) -> int:
        """Query heads that share one key/value head (grouped-query attention)."""
        return self.num_heads // self.num_kv_heads

    def window(self, layer: int) -> int | None:
        """The attention window of layer ``layer`` (None: it sees every earlier position)."""
        if self.sliding_window is None:
            return None
        if self.sliding_layers is None or self.sliding_layers[layer]:
            return self.sliding_window
        return None

    def local_rope(self, layer: int) -> bool:
        """Whether layer ``layer`` rotates with the sliding layers' own base."""
        return self.local_rope_theta is not None and self.window(layer) is not None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> ModelConfig:
        """Reads a transformers ``config.json`` (v5 ``rope_parameters`` or older fields).

        A multimodal ``gemma3`` config is read for its text decoder (``text_config``).
        """
        model_type = hf.get("model_type")
        if model_type in MULTIMODAL_MODEL_TYPES:
            log.info("%s config: reading its text decoder (text_config)", model_type)
            hf = {"model_type": MULTIMODAL_MODEL_TYPES[model_type], **hf.get("text_config", {})}
            model_type = hf["model_type"]
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"config.json has model_type {model_type!r}; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)} (and gemma3's text decoder)"
            )
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            if key not in hf:
                raise ValueError(f"config.json is missing the field {key!r}")
        if hf.get("attn_logit_softcapping") is not None:
            raise UnsupportedArchitectureError(
                f"attn_logit_softcapping ({hf['attn_logit_softcapping']}) is not supported; "
                "Gemma 3 configs leave it null"
            )
        if hf.get("use_bidirectional_attention"):
            raise UnsupportedArchitectureError(
                "use_bidirectional_attention is not supported: these are causal decoders"
            )
        num_heads = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hf["hidden_size"] // num_heads
        global_rope, local_rope = _rope_parameters(hf)
        rope_theta = float(global_rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
        bias = bool(hf.get("attention_bias", False))
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        gemma = model_type == "gemma3_text"
        default_activation = "gelu_pytorch_tanh" if gemma else "silu"
        activation = hf.get("hidden_activation") or hf.get("hidden_act") or default_activation
        if activation not in _HF_ACTIVATIONS:
            raise UnsupportedArchitectureError(
                f"activation {activation!r} is not supported; "
                f"supported: {', '.join(_HF_ACTIVATIONS)}"
            )
        window = _sliding_window(hf)
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            intermediate_size=hf["intermediate_size"],
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=_rope_scaling(global_rope, hf.get("max_position_embeddings")),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            # Gemma's configs tie embeddings by default and often leave the field out.
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", gemma)),
            # Qwen2 always has q/k/v biases and never an output bias.
            qkv_bias=True if model_type == "qwen2" else bias,
            o_bias=False if model_type == "qwen2" else bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
            sliding_window=window,
            sliding_layers=None if window is None else _sliding_layers(hf),
            local_rope_theta=_local_rope_theta(local_rope),
            qk_norm=model_type in ("qwen3", "gemma3_text"),
            norm_unit_offset=gemma,
            sandwich_norms=gemma,
            mlp_activation=_HF_ACTIVATIONS[activation],
            scale_embeddings=gemma,
            query_pre_attn_scalar=(float(hf.get("query_pre_attn_scalar", 256)) if gemma else None),
            final_logit_softcapping=hf.get("final_logit_softcapping"),
            model_type=model_type,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
        )

    @classmethod
    def from_hf_file(cls, path: str | Path) -> ModelConfig:
        with open(path) as f:
            try:
                return cls.from_hf_dict(json.load(f))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from e


def non_embedding_params(config: ModelConfig) -> int:
    """Parameters a token passes through, without the token embedding and the LM head (the
    head is a lookup-sized product that FLOP counts in the paper's style leave out)."""
    e, h, k, d, f = (
        config.hidden_size,
        config.num_heads,
        config.num_kv_heads,
        config.head_dim,
        config.intermediate_size,
    )
    attention = e * (h + 2 * k) * d + h * d * e
    if config.qkv_bias:
        attention += (h + 2 * k) * d
    if config.o_bias:
        attention += e
    mlp = 3 * e * f + (2 * f + e if config.mlp_bias else 0)
    norms = 2 * e
    return config.num_layers * (attention + mlp + norms) + e


def _rope_parameters(hf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """RoPE settings of the global (full-attention) layers, and of the sliding layers where
    they have their own (Gemma 3), else None.

    transformers v5 keeps them in ``rope_parameters`` (per layer type for Gemma 3); v4 in
    ``rope_theta``, ``rope_scaling`` and Gemma 3's ``rope_local_base_freq``.
    """
    params = hf.get("rope_parameters")
    if params is not None and "full_attention" in params:
        return params["full_attention"] or {}, params.get("sliding_attention")
    if params is None:
        params = dict(hf.get("rope_scaling") or {})
        if "rope_theta" in hf:
            params.setdefault("rope_theta", hf["rope_theta"])
    if hf.get("model_type") == "gemma3_text":
        # Gemma 3's defaults, as transformers' Gemma3TextConfig sets them.
        params.setdefault("rope_theta", 1_000_000.0)
        return params, {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
    return params, None


def _local_rope_theta(local: dict[str, Any] | None) -> float | None:
    if local is None:
        return None
    rope_type = local.get("rope_type", "default")
    if rope_type != "default":
        raise UnsupportedArchitectureError(
            f"RoPE scaling type {rope_type!r} on sliding layers is not supported; "
            "supported there: default"
        )
    return float(local.get("rope_theta", 10_000.0))


def _rope_scaling(
    rope: dict[str, Any], max_positions: int | None
) -> RopeScaling | LinearRopeScaling | None:
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type in (None, "default"):
        return None
    if rope_type == "linear":
        return LinearRopeScaling(factor=float(rope["factor"]))
    if rope_type != "llama3":
        raise UnsupportedArchitectureError(
            f"RoPE scaling type {rope_type!r} is not supported; supported: default, linear, llama3"
        )
    return RopeScaling(
        factor=float(rope["factor"]),
        low_freq_factor=float(rope["low_freq_factor"]),
        high_freq_factor=float(rope["high_freq_factor"]),
        original_max_position_embeddings=int(
            rope.get("original_max_position_embeddings", max_positions)
        ),
    )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _sliding_window(hf: dict[str, Any]) -> int | None:
    """The window of the sliding layers (`ModelConfig` checks that it is a positive integer)."""
    # Qwen2 and Qwen3 carry a window size even when it is switched off.
    if hf.get("model_type") in ("qwen2", "qwen3") and not hf.get("use_sliding_window", False):
        return None
    return hf.get("sliding_window")


def _sliding_layers(hf: dict[str, Any]) -> tuple[bool, ...] | None:
    """Which layers slide, from ``layer_types``, Gemma's ``sliding_window_pattern`` (every
    pattern-th layer is global) or Qwen's ``max_window_layers``; None: all of them."""
    layers = hf["num_hidden_layers"]
    types = hf.get("layer_types")
    if types is not None:
        if not isinstance(types, list):  # `ModelConfig` checks there is one per layer
            raise ConfigFieldError(f"config.json: layer_types must be a list, got {types!r}")
        unknown = sorted({str(t) for t in types} - _LAYER_TYPES.keys())
        if unknown:
            raise ConfigFieldError(
                f"config.json: layer_types holds {', '.join(unknown)}; "
                f"supported: {', '.join(_LAYER_TYPES)}"
            )
        return tuple(_LAYER_TYPES[t] for t in types)
    if hf.get("model_type") == "gemma3_text":
        pattern = hf.get("sliding_window_pattern", 6)
        if not _is_positive_int(pattern):
            raise ConfigFieldError(
                f"config.json: sliding_window_pattern must be a positive integer, got {pattern!r}"
            )
        return tuple(bool((i + 1) % pattern) for i in range(layers))
    if hf.get("model_type") in ("qwen2", "qwen3"):
        first = hf.get("max_window_layers", 28)  # transformers' default
        return tuple(i >= first for i in range(layers))
    return None
