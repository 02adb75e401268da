"""GGUF files: names, Q/K un-permutation, config and dequantisation of each type."""

import numpy as np
import pytest

import ttc_jax
from tests import checkpoints
from ttc_jax.models.gguf_source import GGUFSource


@pytest.mark.parametrize("family", ["llama", "llama_tied"])
def test_float32_gguf_equals_transformers(family, tmp_path):
    model = checkpoints.hf_model(family)
    path = tmp_path / "model.gguf"
    checkpoints.write_gguf(model, path, "F32")
    lm = ttc_jax.load_lm(path)
    assert lm.config.tie_word_embeddings == (family == "llama_tied")
    assert lm.config.num_kv_heads == 4 and lm.tokenizer is None
    tokens = np.random.RandomState(0).randint(0, 96, (2, 17))
    np.testing.assert_allclose(
        np.asarray(lm.logits(tokens)), checkpoints.torch_logits(model, tokens), atol=1e-4
    )


@pytest.mark.parametrize("quantization", ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1"])
def test_quantised_tensors_dequantise_exactly(quantization, tmp_path):
    # Quantisation blocks hold 32 values: every input width must be a multiple of 32.
    model = checkpoints.hf_model("llama", intermediate_size=96)
    path = tmp_path / "model.gguf"
    expected = checkpoints.write_gguf(model, path, quantization)
    source = GGUFSource(path)
    shapes = source.shapes()
    assert set(shapes) == set(expected)
    for key, want in expected.items():
        got = source.read(key)
        assert got.shape == shapes[key] == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    # The rounding is real: quantised weights are close to, but not equal to, the originals.
    original = model.state_dict()["model.layers.0.mlp.up_proj.weight"].numpy()
    recovered = source.read("model.layers.0.mlp.up_proj.weight")
    assert 0 < np.abs(recovered - original).max() < 0.05
