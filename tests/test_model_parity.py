"""Our Flax decoder equals transformers' PyTorch models on random weights (float32)."""

import numpy as np
import pytest

import ttc_jax
from tests import checkpoints
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.rope import inverse_frequencies

TOLERANCE = 1e-4


def _tokens(batch=2, time=21, vocab=checkpoints.BASE["vocab_size"], seed=0):
    return np.random.RandomState(seed).randint(0, vocab, (batch, time))


@pytest.mark.parametrize("family", sorted(checkpoints.FAMILIES))
def test_logits_match_transformers(family, tmp_path):
    model = checkpoints.hf_model(family)
    lm = ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path))
    tokens = _tokens()
    ours = np.asarray(lm.logits(tokens))
    assert ours.dtype == np.float32 and ours.shape == (2, 21, checkpoints.BASE["vocab_size"])
    np.testing.assert_allclose(ours, checkpoints.torch_logits(model, tokens), atol=TOLERANCE)


def test_config_reads_family_features(tmp_path):
    qwen = ttc_jax.load_lm(checkpoints.save_hf(checkpoints.hf_model("qwen2"), tmp_path / "q"))
    assert qwen.config.qkv_bias and not qwen.config.o_bias and qwen.config.sliding_window is None
    llama = ttc_jax.load_lm(
        checkpoints.save_hf(checkpoints.hf_model("llama_biases_head_dim"), tmp_path / "l")
    )
    assert llama.config.head_dim == 16 and llama.config.o_bias and llama.config.mlp_bias
    assert "lm_head" in llama.params
    tied = ttc_jax.load_lm(checkpoints.save_hf(checkpoints.hf_model("llama_tied"), tmp_path / "t"))
    assert tied.config.tie_word_embeddings and "lm_head" not in tied.params


def test_llama3_scaling_changes_frequencies_as_transformers_does():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_config = checkpoints.hf_model("llama3_rope").config
    reference, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config)
    ours = inverse_frequencies(ModelConfig.from_hf_dict(hf_config.to_dict()))
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-6)
    unscaled = ModelConfig.from_hf_dict({**hf_config.to_dict(), "rope_parameters": None})
    assert not np.allclose(inverse_frequencies(unscaled), ours)


def test_sharded_checkpoint_loads_like_single_file(tmp_path):
    model = checkpoints.hf_model("llama")
    folder = checkpoints.save_hf(model, tmp_path, max_shard_size="40KB")
    assert (folder / "model.safetensors.index.json").exists()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    tokens = _tokens()
    np.testing.assert_allclose(
        np.asarray(ttc_jax.load_lm(folder).logits(tokens)),
        checkpoints.torch_logits(model, tokens),
        atol=TOLERANCE,
    )


def test_padding_is_invisible(tmp_path):
    lm = ttc_jax.load_lm(checkpoints.save_hf(checkpoints.hf_model("llama"), tmp_path))
    tokens = _tokens(batch=1, time=9)
    plain = np.asarray(lm.logits(tokens))[0]
    left = np.concatenate([np.zeros((1, 4), int), tokens], axis=1)
    mask = np.concatenate([np.zeros((1, 4), int), np.ones((1, 9), int)], axis=1)
    np.testing.assert_allclose(np.asarray(lm.logits(left, mask))[0, 4:], plain, atol=1e-5)
    right = np.concatenate([tokens, np.zeros((1, 3), int)], axis=1)
    right_mask = np.concatenate([np.ones((1, 9), int), np.zeros((1, 3), int)], axis=1)
    np.testing.assert_allclose(np.asarray(lm.logits(right, right_mask))[0, :9], plain, atol=1e-5)


def test_bfloat16_weights_track_float32(tmp_path):
    folder = checkpoints.save_hf(checkpoints.hf_model("qwen2"), tmp_path)
    tokens = _tokens()
    full = np.asarray(ttc_jax.load_lm(folder).logits(tokens))
    half_lm = ttc_jax.load_lm(folder, dtype="bfloat16")
    assert half_lm.params["embed"].dtype == np.dtype("bfloat16")
    half = np.asarray(half_lm.logits(tokens))
    assert half.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: logits agree to about 1e-2 here, not 1e-4.
    assert np.abs(half - full).max() < 0.05
    assert (half.argmax(-1) == full.argmax(-1)).mean() > 0.9


def test_bfloat16_checkpoint_is_read(tmp_path):
    import torch

    model = checkpoints.hf_model("llama").to(torch.bfloat16)
    lm = ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path))
    tokens = _tokens()
    np.testing.assert_allclose(
        np.asarray(lm.logits(tokens)),
        checkpoints.torch_logits(model.float(), tokens),
        atol=TOLERANCE,
    )


def test_config_v5_and_v4_rope_fields_agree():
    base = {
        "model_type": "llama",
        "vocab_size": 10,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
    }
    scaling = {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    v5 = ModelConfig.from_hf_dict(
        {**base, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, **scaling}}
    )
    v4 = ModelConfig.from_hf_dict(
        {**base, "rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", **scaling}}
    )
    assert v5 == v4
    assert v5.rope_theta == 5e5 and v5.rope_scaling.factor == 8.0
    assert v5.num_kv_heads == 2 and v5.head_dim == 4
