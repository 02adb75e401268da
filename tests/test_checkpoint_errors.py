"""Bad checkpoints fail with specific errors that name the problem."""

import json

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import ttc_jax
from tests import checkpoints


@pytest.fixture()
def folder(tmp_path):
    return checkpoints.save_hf(checkpoints.hf_model("llama"), tmp_path / "model")


def _rewrite(folder, change):
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_truncated_safetensors(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ttc_jax.CorruptCheckpointError, match=r"model\.safetensors"):
        ttc_jax.load_lm(folder)


def test_missing_tensor(folder):
    _rewrite(folder, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ttc_jax.MissingTensorError, match=r"model\.layers\.1\.mlp\.up_proj"):
        ttc_jax.load_lm(folder)


def test_unexpected_tensor(folder):
    _rewrite(folder, lambda t: t.update({"model.layers.7.extra": np.zeros(3, np.float32)}))
    with pytest.raises(ttc_jax.UnexpectedTensorError, match=r"model\.layers\.7\.extra"):
        ttc_jax.load_lm(folder)


def test_wrong_shape(folder):
    def shrink(tensors):
        key = "model.layers.0.self_attn.k_proj.weight"
        tensors[key] = tensors[key][:-1]

    with pytest.raises(ttc_jax.ShapeMismatchError, match=r"k_proj\.weight.*\(31, 64\).*\(32, 64\)"):
        _rewrite(folder, shrink)
        ttc_jax.load_lm(folder)


def test_unknown_model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ttc_jax.UnsupportedArchitectureError, match="gpt_neox"):
        ttc_jax.load_lm(folder)


def test_unsupported_rope_scaling(folder):
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ttc_jax.UnsupportedArchitectureError, match="yarn"):
        ttc_jax.load_lm(folder)


def test_missing_weights_file(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(ttc_jax.CheckpointError, match=r"neither model\.safetensors"):
        ttc_jax.load_lm(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        ttc_jax.load_lm(tmp_path / "nowhere")


def test_unsupported_dtype(folder):
    with pytest.raises(ValueError, match="float16"):
        ttc_jax.load_lm(folder, dtype="float16")


def test_unsupported_gguf_quantisation(tmp_path):
    model = checkpoints.hf_model("llama", hidden_size=256, num_attention_heads=8)
    # Q2_K has no dequantiser here: 256 values pack into 84 bytes per block.
    rows = model.config.intermediate_size
    raw = np.zeros((rows, 84), np.uint8)
    overrides = {"blk.0.ffn_gate.weight": (raw, gguf.GGMLQuantizationType.Q2_K)}
    path = tmp_path / "model.gguf"
    checkpoints.write_gguf(model, path, raw_overrides=overrides)
    with pytest.raises(ttc_jax.UnsupportedQuantizationError, match=r"blk\.0\.ffn_gate.*Q2_K"):
        ttc_jax.load_lm(path)


def test_truncated_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    checkpoints.write_gguf(checkpoints.hf_model("llama"), path)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ttc_jax.CorruptCheckpointError, match=r"model\.gguf"):
        ttc_jax.load_lm(path)


def test_unsupported_gguf_architecture(tmp_path):
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ttc_jax.UnsupportedArchitectureError, match="mamba"):
        ttc_jax.load_lm(path)


# -- what a path holds: decided by the file, not its name --------------------------------------


@pytest.fixture()
def gguf_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("written") / "model.gguf"
    checkpoints.write_gguf(checkpoints.hf_model("llama"), path)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["model.GGUF", "model.Gguf", "model", "model.bin"])
def test_gguf_file_is_read_whatever_its_name(gguf_bytes, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gguf_bytes)
    lm = ttc_jax.load_lm(path)
    assert lm.config.num_layers == 2 and lm.tokenizer is None


def test_home_folder_is_expanded(gguf_bytes, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(gguf_bytes)
    assert ttc_jax.load_lm("~/m.gguf").config.num_layers == 2
    assert ttc_jax.load_lm(f"~/{folder.name}").config.num_layers == 2


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"folder without config\.json"):
        ttc_jax.load_lm(tmp_path)


def test_folder_without_config_names_the_gguf_file_it_holds(gguf_bytes, tmp_path):
    (tmp_path / "SmolLM.Q4.GGUF").write_bytes(gguf_bytes)
    with pytest.raises(FileNotFoundError, match=r"GGUF file\(s\) SmolLM\.Q4\.GGUF: pass one"):
        ttc_jax.load_lm(tmp_path)


@pytest.mark.parametrize("name", ["model.gguf", "model.safetensors", "notes.txt"])
def test_file_that_is_not_gguf(folder, tmp_path, name):
    path = tmp_path / name
    path.write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ttc_jax.CheckpointError, match=r"neither a GGUF file.*nor a Hugging Face"):
        ttc_jax.load_lm(path)


def test_prm_from_a_gguf_file(gguf_bytes, tmp_path):
    path = tmp_path / "prm.gguf"
    path.write_bytes(gguf_bytes)
    with pytest.raises(ttc_jax.CheckpointError, match=r"PRMs load from a Hugging Face folder"):
        ttc_jax.load_prm(path, "math_shepherd")


def test_prm_folder_path_is_expanded(folder, tmp_path, monkeypatch):
    # The folder has no tokenizer, which a PRM needs: reaching that check means it was found.
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        ttc_jax.load_prm(f"~/{folder.name}", "math_shepherd")
