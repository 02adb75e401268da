"""Gemma 3's text decoder equals transformers' Gemma3ForCausalLM: sqrt(hidden)-scaled
embeddings, (1 + weight) RMSNorms in float32, four norms a layer, q/k norms, GeGLU,
query_pre_attn_scalar, local sliding-window layers (a window shorter than the sequence) with
their own RoPE base beside global layers with linear RoPE scaling, tied or untied embeddings;
from safetensors (also a multimodal gemma3 checkpoint's text part) and GGUF, through full
forward passes and the engine's cached decoding. Loading is strict."""

import json
import logging

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers
from flax import nnx

import ttc_jax
from tests import checkpoints, family_checks
from ttc_jax.models.config import LinearRopeScaling, ModelConfig
from ttc_jax.models.transformer import Transformer

TOKENS = np.random.RandomState(0).randint(0, checkpoints.BASE["vocab_size"], (2, 21))


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    model = checkpoints.hf_model("gemma3")
    return model, ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path_factory.mktemp("gemma3")))


def test_config_reads_gemma3_features(gemma3):
    cfg = gemma3[1].config
    assert cfg.model_type == "gemma3_text" and cfg.tie_word_embeddings
    assert cfg.sliding_window == 5 and cfg.sliding_layers == (True, False, True)
    assert [cfg.window(i) for i in range(3)] == [5, None, 5]
    assert cfg.local_rope_theta == 1e4 and cfg.rope_theta == 1e6
    assert cfg.rope_scaling == LinearRopeScaling(8.0)
    assert cfg.query_pre_attn_scalar == 24 and cfg.head_dim == 16
    assert cfg.qk_norm and cfg.norm_unit_offset and cfg.sandwich_norms and cfg.scale_embeddings
    assert cfg.mlp_activation == "gelu_tanh" and cfg.num_kv_heads < cfg.num_heads


@pytest.mark.parametrize(
    "family, overrides",
    [
        # ("gemma3", {}), tied, windows of 5 in 21 tokens, local and global RoPE bases: the
        # module's model, checked in test_the_window_and_the_local_rope_base_matter.
        ("gemma3_pattern", {}),  # untied, sliding_window_pattern's layers
        ("gemma3", {"final_logit_softcapping": 2.0}),  # Gemma 2's cap, supported
    ],
)
def test_logits_match_transformers(family, overrides, tmp_path):
    model = checkpoints.hf_model(family, **overrides)
    lm = ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path))
    assert lm.config.final_logit_softcapping == overrides.get("final_logit_softcapping")
    np.testing.assert_allclose(
        np.asarray(lm.logits(TOKENS)), checkpoints.torch_logits(model, TOKENS), atol=1e-4
    )


def test_the_window_and_the_local_rope_base_matter(gemma3):
    model, lm = gemma3
    reference = checkpoints.torch_logits(model, TOKENS)
    np.testing.assert_allclose(np.asarray(lm.logits(TOKENS)), reference, atol=1e-4)
    for change in ({"sliding_window": 64}, {"local_rope_theta": 1e6}):
        other = ttc_jax.LanguageModel(
            lm.config.replace(**change), lm.params, lm.mesh, lm.rules, lm.dtype
        )
        assert np.abs(np.asarray(other.logits(TOKENS)) - reference).max() > 1e-3, change


def test_cached_decoding_matches_transformers(gemma3):
    # Prompts of 7 and 3 tokens around the window of 5.
    family_checks.assert_cached_decoding_matches(gemma3[1], gemma3[0])


def test_greedy_generation_matches_transformers(gemma3):
    family_checks.assert_greedy_matches(gemma3[1], gemma3[0], [int(t) for t in TOKENS[0, :8]])


def test_embedding_scale_is_rounded_to_the_model_dtype():
    # sqrt(3072) = 55.43 is 55.5 in bfloat16, and transformers multiplies by that.
    cfg = ModelConfig(
        vocab_size=4,
        hidden_size=3072,
        num_layers=1,
        num_heads=1,
        num_kv_heads=1,
        head_dim=16,
        intermediate_size=8,
        scale_embeddings=True,
    )
    model = Transformer(cfg, jnp.bfloat16, rngs=nnx.Rngs(0))
    embedded = model.embed_tokens(jnp.array([[1]]))
    expected = model.embed[...][1] * jnp.bfloat16(55.5)
    np.testing.assert_array_equal(np.asarray(embedded[0, 0]), np.asarray(expected))


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_matches_transformers(tied, tmp_path):
    model = checkpoints.hf_model("gemma3_pattern", tie_word_embeddings=tied)
    path = tmp_path / "gemma3.gguf"
    checkpoints.write_family_gguf(model, path)
    lm = ttc_jax.load_lm(path)
    cfg = lm.config
    assert cfg.model_type == "gemma3_text" and cfg.tie_word_embeddings == tied
    assert cfg.sliding_layers == (True,) * 5 + (False, True) and cfg.sliding_window == 4
    np.testing.assert_allclose(
        np.asarray(lm.logits(TOKENS)), checkpoints.torch_logits(model, TOKENS), atol=1e-4
    )


def test_gguf_with_a_sliding_window_pattern_in_its_metadata(tmp_path):
    layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
    model = checkpoints.hf_model("gemma3", query_pre_attn_scalar=16, rope_parameters=None)
    assert model.config.layer_types == layer_types
    path = tmp_path / "gemma3.gguf"
    checkpoints.write_family_gguf(model, path, sliding_window_pattern=[True, False, True])
    lm = ttc_jax.load_lm(path)
    assert lm.config.sliding_layers == (True, False, True)
    np.testing.assert_allclose(
        np.asarray(lm.logits(TOKENS)), checkpoints.torch_logits(model, TOKENS), atol=1e-4
    )


def _multimodal_model():
    text = transformers.Gemma3TextConfig(
        **{**checkpoints.BASE, **checkpoints.FAMILIES["gemma3"][1]}
    )
    vision = transformers.SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    config = transformers.Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4
    )
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((0.1 if "norm" in name else 0.05) * torch.randn_like(p))
    return model


def test_a_multimodal_checkpoint_loads_its_text_decoder_and_says_it_skipped_the_vision(
    tmp_path, caplog
):
    model = _multimodal_model()
    folder = checkpoints.save_hf(model, tmp_path)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gemma3"
    with caplog.at_level(logging.WARNING):
        lm = ttc_jax.load_lm(folder)
    assert "vision tower was skipped" in caplog.text
    assert lm.config.model_type == "gemma3_text" and lm.config.sliding_window == 5
    np.testing.assert_allclose(
        np.asarray(lm.logits(TOKENS)), checkpoints.torch_logits(model, TOKENS), atol=1e-4
    )


def _saved_gemma3(tmp_path):
    return checkpoints.save_hf(checkpoints.hf_model("gemma3"), tmp_path / "gemma3")


def test_a_missing_norm_is_named(tmp_path):
    folder = _saved_gemma3(tmp_path)
    file = folder / "model.safetensors"
    tensors = safetensors.numpy.load_file(file)
    del tensors["model.layers.1.post_feedforward_layernorm.weight"]
    safetensors.numpy.save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ttc_jax.MissingTensorError, match="post_feedforward_layernorm"):
        ttc_jax.load_lm(folder)


def _with_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    # A corrupt weights file: a config error must come first, before any weight is read.
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"sliding_window": "512"}, "sliding_window"),
        ({"sliding_window": 0}, "sliding_window"),
        (
            {"layer_types": ["sliding_attention", "chunked_attention", "full_attention"]},
            "layer_types",
        ),
        ({"layer_types": ["full_attention"]}, "layer_types"),
        ({"layer_types": None, "sliding_window_pattern": "6"}, "sliding_window_pattern"),
    ],
)
def test_a_window_field_that_does_not_parse_is_named_before_any_weight_is_read(
    tmp_path, changes, field
):
    folder = _with_config(_saved_gemma3(tmp_path), **changes)
    with pytest.raises(ttc_jax.ConfigFieldError, match=field) as error:
        ttc_jax.load_lm(folder)
    assert isinstance(error.value, ttc_jax.CheckpointError)


def test_the_sliding_window_pattern_of_older_configs_is_read():
    config = checkpoints.hf_model("gemma3").config.to_dict()
    config.update(layer_types=None, sliding_window_pattern=3, num_hidden_layers=6)
    assert ModelConfig.from_hf_dict(config).sliding_layers == (True, True, False) * 2
    config.pop("sliding_window_pattern")
    assert ModelConfig.from_hf_dict(config).sliding_layers == (True,) * 5 + (False,)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_type": "gemma3n_text"}, "'gemma3n_text'.*supported: llama"),
        ({"model_type": "gemma3n"}, "'gemma3n'.*supported: llama"),
        ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
        ({"hidden_activation": "relu"}, "activation 'relu'"),
    ],
)
def test_unsupported_variants_name_themselves(changes, message):
    config = {**checkpoints.hf_model("gemma3").config.to_dict(), **changes}
    with pytest.raises(ttc_jax.UnsupportedArchitectureError, match=message):
        ModelConfig.from_hf_dict(config)


def test_gemma_rmsnorm_in_bfloat16_equals_transformers_and_not_llamas_order():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    from ttc_jax.models.layers import RMSNorm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 256)).astype(np.float32) * 3
    weight = rng.normal(size=(256,)).astype(np.float32)
    reference = Gemma3RMSNorm(256, eps=1e-6).to(torch.bfloat16)  # a bfloat16 model's norm
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(weight))
        expected = reference(torch.tensor(x).bfloat16()).float().numpy()
    ours = RMSNorm(256, 1e-6, jnp.bfloat16, unit_offset=True)
    ours.scale[...] = jnp.asarray(weight, jnp.bfloat16)
    got = np.asarray(ours(jnp.asarray(x, jnp.bfloat16)).astype(jnp.float32))
    np.testing.assert_array_equal(got, expected)
    # Llama's order (cast the normed input back, then scale) rounds twice: it differs.
    llama = RMSNorm(256, 1e-6, jnp.bfloat16)
    llama.scale[...] = 1 + jnp.asarray(weight, jnp.bfloat16)
    assert (np.asarray(llama(jnp.asarray(x, jnp.bfloat16)).astype(jnp.float32)) != expected).any()
