"""Tiny random transformers checkpoints and GGUF files, written the way real ones are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import transformers

if TYPE_CHECKING:
    import gguf

# Small enough to compile in about a second, large enough for GQA (2 query heads per KV head)
# and for 8 heads to split over 4 devices.
BASE = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
)

FAMILIES = {
    "llama": (transformers.LlamaConfig, {}),
    "llama_tied": (transformers.LlamaConfig, {"tie_word_embeddings": True}),
    "llama3_rope": (
        transformers.LlamaConfig,
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
    ),
    "llama_biases_head_dim": (
        transformers.LlamaConfig,
        {"attention_bias": True, "mlp_bias": True, "head_dim": 16},
    ),
    "qwen2": (transformers.Qwen2Config, {"tie_word_embeddings": False}),
    "qwen2_tied": (transformers.Qwen2Config, {"tie_word_embeddings": True}),
    "mistral": (transformers.MistralConfig, {"sliding_window": None, "head_dim": 8}),
    # Qwen3: q/k norms, an explicit head_dim unlike hidden_size / heads, no biases.
    "qwen3": (transformers.Qwen3Config, {"head_dim": 16, "tie_word_embeddings": False}),
    "qwen3_tied": (transformers.Qwen3Config, {"head_dim": 16, "tie_word_embeddings": True}),
    # Gemma 3: local layers with a window of 5 (shorter than the test sequences) and their own
    # RoPE base, a global layer with linear RoPE scaling, query_pre_attn_scalar != head_dim.
    "gemma3": (
        transformers.Gemma3TextConfig,
        {
            "num_hidden_layers": 3,
            "head_dim": 16,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "sliding_window": 5,
            "query_pre_attn_scalar": 24,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            },
        },
    ),
    # The published defaults: tied embeddings, five local layers per global one (from
    # sliding_window_pattern), query_pre_attn_scalar = head_dim.
    "gemma3_pattern": (
        transformers.Gemma3TextConfig,
        {
            "num_hidden_layers": 7,
            "head_dim": 16,
            "sliding_window": 4,
            "query_pre_attn_scalar": 16,
            "tie_word_embeddings": False,
        },
    ),
}


def hf_model(family: str, seed: int = 0, **overrides):
    """A random transformers model; every weight and bias drawn so that none is trivial."""
    config_cls, extra = FAMILIES[family]
    config = config_cls(**{**BASE, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def save_hf(model, folder: Path, max_shard_size: str | None = None) -> Path:
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(folder, **kwargs)
    return folder


def torch_logits(model, token_ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(token_ids)).logits.float().numpy()


def _permute_rope_rows(w: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's conversion: interleave each head's two RoPE halves."""
    out_dim, in_dim = w.shape
    return (
        w.reshape(num_heads, 2, out_dim // num_heads // 2, in_dim)
        .swapaxes(1, 2)
        .reshape(out_dim, in_dim)
    )


_GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _add_decoder_metadata(writer, cfg, rope_theta: float) -> None:
    """The metadata every decoder architecture's GGUF file carries, from a transformers
    config."""
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(rope_theta)
    writer.add_vocab_size(cfg.vocab_size)


def write_gguf(
    model,
    path: Path,
    quantization: str = "F32",
    raw_overrides: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType]] | None = None,
    tokenizer: transformers.PreTrainedTokenizerFast | None = None,
) -> dict[str, np.ndarray]:
    """Writes a Llama-architecture model as llama.cpp would, with a byte-level BPE `tokenizer`
    in the metadata if given; returns the float32 tensors (transformers names and layout) a
    faithful reader must recover after dequantisation."""
    import gguf  # imported here: the other tests also run where gguf is not installed

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    if tokenizer is not None:
        _add_byte_level_tokenizer(writer, tokenizer)
    _add_decoder_metadata(writer, cfg, cfg.rope_parameters["rope_theta"])
    qtype = gguf.GGMLQuantizationType[quantization]
    expected = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w = tensor.float().numpy()
        name = _gguf_name(key)
        if key.endswith("q_proj.weight"):
            stored = _permute_rope_rows(w, cfg.num_attention_heads)
        elif key.endswith("k_proj.weight"):
            stored = _permute_rope_rows(w, cfg.num_key_value_heads)
        else:
            stored = w
        # llama.cpp keeps 1-D tensors (norms) in float32 whatever the file type.
        this_type = qtype if w.ndim == 2 else gguf.GGMLQuantizationType.F32
        if raw_overrides and name in raw_overrides:
            data, this_type = raw_overrides[name]
            writer.add_tensor(name, data, raw_dtype=this_type)
            continue
        quantized = gguf.quants.quantize(stored, this_type)
        # Blocks run along rows and the permutation moves whole rows, so the reader must
        # recover exactly the round trip of the unpermuted weight.
        expected[key] = gguf.quants.dequantize(gguf.quants.quantize(w, this_type), this_type)
        if this_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            writer.add_tensor(name, quantized)
        else:
            writer.add_tensor(name, quantized, raw_dtype=this_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def _add_byte_level_tokenizer(writer, tokenizer: transformers.PreTrainedTokenizerFast) -> None:
    """llama.cpp's metadata for a byte-level BPE tokenizer: tokens by id, merges, token types
    (special tokens are "control" tokens), special token ids and the chat template."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = {
        **backend["model"]["vocab"],
        **{t["content"]: t["id"] for t in backend["added_tokens"]},
    }
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[token] for token in tokens] == list(range(len(tokens)))
    special = {t["content"] for t in backend["added_tokens"] if t["special"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges([" ".join(pair) for pair in backend["model"]["merges"]])
    writer.add_token_types(
        [gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens]
    )
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _gguf_name(key: str) -> str:
    globals_ = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if key in globals_:
        return globals_[key]
    _, _, layer, rest = key.split(".", 3)
    return f"blk.{layer}.{_GGUF_LAYER_NAMES[rest]}"


# llama.cpp's architecture names of the families its converter writes without Llama's RoPE
# row permutation.
_GGUF_ARCHITECTURES = {"qwen3": "qwen3", "gemma3_text": "gemma3"}
_GGUF_QK_NORM_NAMES = {
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_GGUF_GEMMA_LAYER_NAMES = {
    **_GGUF_LAYER_NAMES,
    **_GGUF_QK_NORM_NAMES,
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


def write_family_gguf(model, path: Path, sliding_window_pattern=None) -> None:
    """Writes a Qwen3 or Gemma 3 model in float32 as llama.cpp's converter does: q and k rows
    as they are, q/k norms as ``attn_q_norm`` / ``attn_k_norm``, and for Gemma 3 its own norm
    names, norm weights stored with their unit offset added, and the sliding window (llama.cpp
    assumes the rest: five local layers per global one unless ``sliding_window_pattern`` is
    written, local RoPE base 1e4, queries scaled by head_dim ** -0.5)."""
    import gguf

    cfg = model.config
    arch = _GGUF_ARCHITECTURES[cfg.model_type]
    gemma = arch == "gemma3"
    writer = gguf.GGUFWriter(str(path), arch)
    rope = cfg.rope_parameters["full_attention"] if gemma else cfg.rope_parameters
    _add_decoder_metadata(writer, cfg, rope["rope_theta"])
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    if gemma:
        writer.add_sliding_window(cfg.sliding_window)
    if sliding_window_pattern is not None:
        writer.add_sliding_window_pattern(sliding_window_pattern)
    names = _GGUF_GEMMA_LAYER_NAMES if gemma else {**_GGUF_LAYER_NAMES, **_GGUF_QK_NORM_NAMES}
    globals_ = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w = tensor.float().numpy()
        if gemma and key.endswith("norm.weight"):
            w = w + 1.0
        if key in globals_:
            name = globals_[key]
        else:
            _, _, layer, rest = key.split(".", 3)
            name = f"blk.{layer}.{names[rest]}"
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
