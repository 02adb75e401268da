"""Model shapes the benchmarks run with random weights, and their transformers twins.

The shapes are those of real checkpoints (SmolLM2-135M for this CPU, Llama-3.2-1B for the GPU)
so that byte counts and arithmetic match the real models; the weights are random, so no
download is needed. EOS is switched off (``eos_token_ids=()``) so that every sample of a
throughput run generates the full token budget.
"""

from __future__ import annotations

import transformers

from ttc_jax.models.config import ModelConfig, RopeScaling

SHAPES = {
    "smollm2": ModelConfig(
        vocab_size=49152,
        hidden_size=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        intermediate_size=1536,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
    "llama3.2-1b": ModelConfig(
        vocab_size=128256,
        hidden_size=2048,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        intermediate_size=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling=RopeScaling(
            factor=32.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        ),
        max_position_embeddings=131072,
        tie_word_embeddings=True,
    ),
}


def transformers_config(cfg: ModelConfig) -> transformers.LlamaConfig:
    """The transformers ``LlamaConfig`` of the same architecture.

    Checked by reading it back with `ModelConfig.from_hf_dict`: the project's own reader is
    the definition of what each transformers field means, so a mistranslated field fails here
    instead of silently benchmarking a different model.
    """
    unsupported = {
        "qkv_bias": cfg.qkv_bias,
        "o_bias": cfg.o_bias,
        "mlp_bias": cfg.mlp_bias,
        "rope_freq_factors": cfg.rope_freq_factors,
        "sliding_window": cfg.sliding_window,
    }
    if cfg.model_type != "llama" or any(v for v in unsupported.values()):
        raise ValueError(f"only plain Llama shapes are benchmarked, got {cfg}")
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope.update(
            rope_type="llama3",
            factor=s.factor,
            low_freq_factor=s.low_freq_factor,
            high_freq_factor=s.high_freq_factor,
            original_max_position_embeddings=s.original_max_position_embeddings,
        )
    hf = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters=rope,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=list(cfg.eos_token_ids) or None,
        pad_token_id=None,
    )
    read_back = ModelConfig.from_hf_dict(hf.to_dict())
    if read_back != cfg:
        raise AssertionError(f"transformers config does not round-trip:\n{read_back}\n!= {cfg}")
    return hf
