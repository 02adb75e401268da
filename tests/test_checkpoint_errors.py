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
