"""Export of this package's parameter trees to Hugging Face folders (config.json + safetensors).

The inverse of `ttc_jax.models.checkpoint.transformers_layout`: fused query/key/value and
gate/up weights are split back into transformers' separate ``[out, in]`` matrices, einsum
layouts transposed back, and every tensor named as transformers names it. A decoder exported
here loads with `ttc_jax.load_lm` and with transformers' ``LlamaForCausalLM``; a value-head PRM
(`save_value_prm`) loads with ``ttc_jax.load_prm(folder, "ttc_value")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import Params, flatten

VALUE_PRM_ARCHITECTURE = "TtcValuePRM"
LIKELIHOOD_PRM_ARCHITECTURE = "TtcLikelihoodPRM"
CAUSAL_LM_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}


def hf_config(cfg: ModelConfig, architecture: str | None = None) -> dict[str, Any]:
    """A transformers ``config.json`` that `ModelConfig.from_hf_dict` reads back as ``cfg``."""
    if cfg.model_type not in CAUSAL_LM_ARCHITECTURES or cfg.sliding_layers is not None:
        # Their extra tensors (q/k and Gemma's norms) and per-layer windows are not written.
        raise NotImplementedError(
            f"exporting {cfg.model_type} models is not supported; "
            f"supported: {', '.join(CAUSAL_LM_ARCHITECTURES)} with one window for every layer"
        )
    if cfg.rope_scaling is not None or cfg.rope_freq_factors is not None:
        raise NotImplementedError("exporting RoPE scaling or frequency factors is not supported")
    if cfg.qkv_bias != cfg.o_bias and cfg.model_type != "qwen2":
        raise ValueError("a llama or mistral config.json has one attention_bias for q/k/v and o")
    eos = list(cfg.eos_token_ids)
    return {
        "architectures": [architecture or CAUSAL_LM_ARCHITECTURES[cfg.model_type]],
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": cfg.qkv_bias,
        "mlp_bias": cfg.mlp_bias,
        "sliding_window": cfg.sliding_window,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "torch_dtype": "float32",
    }


def transformers_tensors(cfg: ModelConfig, params: Params, prefix: str = "model.") -> dict:
    """Checkpoint key -> float32 numpy tensor in transformers' layout, for every parameter."""
    flat = {path: np.asarray(value, np.float32) for path, value in flatten(params).items()}
    e, h, k, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    group = cfg.q_per_kv
    tensors = {
        f"{prefix}embed_tokens.weight": flat[("embed",)],
        f"{prefix}norm.weight": flat[("final_norm", "scale")],
    }
    if not cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = flat[("lm_head",)].T
    for i in range(cfg.num_layers):
        layer = {path[2:]: value for path, value in flat.items() if path[:2] == ("layers", i)}
        pre = f"{prefix}layers.{i}."
        attn, mlp = pre + "self_attn.", pre + "mlp."
        qkv = layer[("attn", "qkv_proj")]  # [e, k, group + 2, d]
        tensors[pre + "input_layernorm.weight"] = layer[("input_norm", "scale")]
        tensors[pre + "post_attention_layernorm.weight"] = layer[("post_attn_norm", "scale")]
        tensors[attn + "q_proj.weight"] = qkv[:, :, :group].reshape(e, h * d).T
        tensors[attn + "k_proj.weight"] = qkv[:, :, group].reshape(e, k * d).T
        tensors[attn + "v_proj.weight"] = qkv[:, :, group + 1].reshape(e, k * d).T
        tensors[attn + "o_proj.weight"] = layer[("attn", "o_proj")].reshape(h * d, e).T
        gate_up = layer[("mlp", "gate_up_proj")]  # [e, 2, f]
        tensors[mlp + "gate_proj.weight"] = gate_up[:, 0].T
        tensors[mlp + "up_proj.weight"] = gate_up[:, 1].T
        tensors[mlp + "down_proj.weight"] = layer[("mlp", "down_proj")].T
        if cfg.qkv_bias:
            bias = layer[("attn", "qkv_bias")]  # [k, group + 2, d]
            tensors[attn + "q_proj.bias"] = bias[:, :group].reshape(h * d)
            tensors[attn + "k_proj.bias"] = bias[:, group].reshape(k * d)
            tensors[attn + "v_proj.bias"] = bias[:, group + 1].reshape(k * d)
        if cfg.o_bias:
            tensors[attn + "o_proj.bias"] = layer[("attn", "o_bias")]
        if cfg.mlp_bias:
            tensors[mlp + "gate_proj.bias"] = layer[("mlp", "gate_up_bias")][0]
            tensors[mlp + "up_proj.bias"] = layer[("mlp", "gate_up_bias")][1]
            tensors[mlp + "down_proj.bias"] = layer[("mlp", "down_bias")]
    return {key: np.ascontiguousarray(value) for key, value in tensors.items()}


def _write(folder: Path, config: dict, tensors: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def save_causal_lm(folder: str | Path, cfg: ModelConfig, params: Params) -> Path:
    """Writes a decoder as a transformers causal LM folder (without a tokenizer)."""
    return _write(Path(folder), hf_config(cfg), transformers_tensors(cfg, params))


def save_value_prm(
    folder: str | Path, cfg: ModelConfig, backbone: Params, head: dict[str, Any]
) -> Path:
    """Writes a ``ttc_value`` PRM: the decoder under ``model.*`` (no LM head) and
    ``value_head.weight`` [1, hidden] with ``value_head.bias`` [1]; or, when ``head`` has a
    ``likelihood_weight``, a ``ttc_likelihood`` PRM with ``value_head.likelihood_weight`` [1].

    ``head`` holds `ttc_jax.prm.heads.ValueHead`'s parameters: ``value_proj`` [hidden] and
    ``value_bias`` [] (and `LikelihoodValueHead`'s ``likelihood_weight`` []).
    """
    if not cfg.tie_word_embeddings:
        raise ValueError("a value PRM has no LM head: give a config with tied embeddings")
    tensors = transformers_tensors(cfg, backbone)
    tensors["value_head.weight"] = np.asarray(head["value_proj"], np.float32).reshape(1, -1)
    tensors["value_head.bias"] = np.asarray(head["value_bias"], np.float32).reshape(1)
    architecture = VALUE_PRM_ARCHITECTURE
    if "likelihood_weight" in head:
        weight = np.asarray(head["likelihood_weight"], np.float32).reshape(1)
        tensors["value_head.likelihood_weight"] = weight
        architecture = LIKELIHOOD_PRM_ARCHITECTURE
    return _write(Path(folder), hf_config(cfg, architecture), tensors)
