"""A Hugging Face folder's tokenizer: loaded, absent (None), or unreadable with an error that
names the missing tokenizer.json."""

import json

import pytest

import ttc_jax
from tests import checkpoints, prm_checkpoints


@pytest.fixture()
def folder(tmp_path):
    model = checkpoints.hf_model("llama", vocab_size=prm_checkpoints.VOCAB_SIZE)
    return checkpoints.save_hf(model, tmp_path / "model")


def test_folder_without_tokenizer_files_loads_without_a_tokenizer(folder):
    assert ttc_jax.load_lm(folder).tokenizer is None


def test_folder_with_its_tokenizer_loads_it(folder):
    prm_checkpoints.build_tokenizer("math_shepherd").save_pretrained(folder)
    assert ttc_jax.load_lm(folder).tokenizer.decode([5, 6]) != ""


@pytest.mark.parametrize(
    "load",
    [ttc_jax.load_lm, lambda path: ttc_jax.load_prm(path, "ttc_value")],
    ids=["load_lm", "load_prm"],
)
def test_tokenizer_config_without_tokenizer_json_names_the_missing_file(folder, load):
    prm_checkpoints.build_tokenizer("math_shepherd").save_pretrained(folder)
    (folder / "tokenizer.json").unlink()
    # Not transformers' "install sentencepiece or tiktoken".
    with pytest.raises(ttc_jax.CheckpointError, match=r"no tokenizer\.json") as raised:
        load(folder)
    assert str(folder) in str(raised.value) and "sentencepiece" not in str(raised.value)


def test_slow_tokenizer_files_that_convert_still_load(folder):
    # A GPT-2 vocabulary and merges need no tokenizer.json: transformers builds the tokenizer.
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2, "<|eot|>": 3}))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|eot|>"})
    )
    assert ttc_jax.load_lm(folder).tokenizer("ab").input_ids == [2]
