"""Qwen3 (dense) equals transformers' Qwen3ForCausalLM: per-head q/k RMSNorm before RoPE, no
q/k/v biases, an explicit head_dim; from safetensors and from GGUF, through full forward passes
and the engine's cached decoding."""

import numpy as np
import pytest

import ttc_jax
from tests import checkpoints, family_checks
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.export import hf_config

TOKENS = np.random.RandomState(0).randint(0, checkpoints.BASE["vocab_size"], (2, 21))


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    model = checkpoints.hf_model("qwen3")
    return model, ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path_factory.mktemp("qwen3")))


def test_config_reads_qwen3_features(qwen3):
    _, lm = qwen3
    cfg = lm.config
    assert cfg.model_type == "qwen3" and cfg.qk_norm and cfg.head_dim == 16
    assert not (cfg.qkv_bias or cfg.o_bias or cfg.norm_unit_offset or cfg.sandwich_norms)
    assert cfg.sliding_window is None  # use_sliding_window is false
    assert lm.params["layers"][0]["attn"]["q_norm"]["scale"].shape == (16,)


def test_qk_norms_are_read_and_used(qwen3):
    model, lm = qwen3
    ours = np.asarray(lm.logits(TOKENS))
    np.testing.assert_allclose(ours, checkpoints.torch_logits(model, TOKENS), atol=1e-4)
    # The norms' weights matter: the same model with unit q/k norms gives other logits.
    params = dict(lm.params)
    params["layers"] = {
        i: {
            **layer,
            "attn": {
                **layer["attn"],
                "q_norm": {"scale": layer["attn"]["q_norm"]["scale"] * 0 + 1},
            },
        }
        for i, layer in lm.params["layers"].items()
    }
    plain = ttc_jax.LanguageModel(lm.config, params, lm.mesh, lm.rules, lm.dtype)
    assert np.abs(np.asarray(plain.logits(TOKENS)) - ours).max() > 1e-3


def test_cached_decoding_matches_transformers(qwen3):
    family_checks.assert_cached_decoding_matches(qwen3[1], qwen3[0])


def test_greedy_generation_matches_transformers(qwen3):
    family_checks.assert_greedy_matches(qwen3[1], qwen3[0], [int(t) for t in TOKENS[0, :6]])


@pytest.mark.parametrize("family", ["qwen3", "qwen3_tied"])
def test_gguf_matches_transformers(family, tmp_path):
    model = checkpoints.hf_model(family)
    path = tmp_path / "qwen3.gguf"
    checkpoints.write_family_gguf(model, path)
    lm = ttc_jax.load_lm(path)
    assert lm.config.model_type == "qwen3" and lm.config.qk_norm and lm.config.head_dim == 16
    assert lm.config.tie_word_embeddings == (family == "qwen3_tied")
    np.testing.assert_allclose(
        np.asarray(lm.logits(TOKENS)), checkpoints.torch_logits(model, TOKENS), atol=1e-4
    )


@pytest.mark.parametrize("model_type", ["qwen3_moe", "qwen3_next"])
def test_unsupported_qwen3_variants_name_themselves_and_the_supported_list(model_type):
    config = {**checkpoints.BASE, "model_type": model_type}
    with pytest.raises(ttc_jax.UnsupportedArchitectureError, match=model_type) as error:
        ModelConfig.from_hf_dict(config)
    assert "qwen3, gemma3_text" in str(error.value)


def test_export_refuses_what_it_cannot_write(qwen3):
    # Exporting would drop the q/k norms: refused, not written wrong.
    with pytest.raises(NotImplementedError, match="exporting qwen3 models"):
        hf_config(qwen3[1].config)


def test_a_switched_on_window_slides_from_max_window_layers_on():
    config = {
        **checkpoints.BASE,
        "model_type": "qwen3",
        "num_hidden_layers": 4,
        "use_sliding_window": True,
        "sliding_window": 8,
        "max_window_layers": 2,
    }
    assert ModelConfig.from_hf_dict(config).sliding_layers == (False, False, True, True)
    switched_off = ModelConfig.from_hf_dict({**config, "use_sliding_window": False})
    assert switched_off.sliding_window is None and switched_off.window(3) is None
