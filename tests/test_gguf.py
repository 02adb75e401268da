"""GGUF files: names, Q/K un-permutation, config, dequantisation of each type, and the tokenizer
in the metadata."""

import gguf
import numpy as np
import pytest
import transformers

import ttc_jax
from tests import checkpoints, prm_checkpoints
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


def test_tokenizer_from_metadata_equals_transformers_reading_the_file_once(tmp_path, monkeypatch):
    """The tokenizer comes from the metadata load_lm has parsed anyway: the file is read by one
    GGUF reader, and the tokenizer is the one transformers builds from the same file."""
    tokenizer = prm_checkpoints.build_tokenizer("qwen_math_prm")
    model = checkpoints.hf_model("llama", vocab_size=prm_checkpoints.VOCAB_SIZE)
    path = tmp_path / "model.gguf"
    checkpoints.write_gguf(model, path, tokenizer=tokenizer)
    readers = []
    reader_init = gguf.GGUFReader.__init__

    def counting_init(self, *args, **kwargs):
        readers.append(args)
        reader_init(self, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFReader, "__init__", counting_init)
    mine = ttc_jax.load_lm(path).tokenizer
    assert len(readers) == 1
    monkeypatch.undo()
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    assert type(mine) is type(theirs)
    assert mine.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()
    assert mine.special_tokens_map == theirs.special_tokens_map
    assert mine.chat_template == theirs.chat_template == tokenizer.chat_template
    text = "Janet's ducks lay 16 eggs.<extra_0>She eats three."
    assert mine.encode(text) == theirs.encode(text) == tokenizer.encode(text)
    messages = [{"role": "user", "content": "What is 12 + 35?"}]
    assert mine.apply_chat_template(messages) == theirs.apply_chat_template(messages)


def test_plain_view_reader_reads_what_gguf_reads(tmp_path):
    path = tmp_path / "model.gguf"
    checkpoints.write_gguf(
        checkpoints.hf_model("llama", vocab_size=prm_checkpoints.VOCAB_SIZE, intermediate_size=96),
        path,
        "Q8_0",
        tokenizer=prm_checkpoints.build_tokenizer("rlhflow"),
    )
    ours, theirs = GGUFSource(path).reader, gguf.GGUFReader(path)
    assert type(ours.data) is np.ndarray
    assert list(ours.fields) == list(theirs.fields)
    for key, field in theirs.fields.items():
        assert ours.fields[key].contents() == field.contents(), key
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, reference in zip(ours.tensors, theirs.tensors, strict=True):
        assert mine.tensor_type == reference.tensor_type
        np.testing.assert_array_equal(mine.data, reference.data)
