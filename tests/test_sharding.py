"""The same program on meshes of 8 fake CPU devices gives the same numbers."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

import ttc_jax
from tests import checkpoints
from ttc_jax.sharding import ShardingRules, make_mesh, mesh_from_config

MESHES = [(1, 1), (2, 4), (8, 1)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = checkpoints.hf_model("qwen2")
    return checkpoints.save_hf(model, tmp_path_factory.mktemp("qwen2"))


def test_eight_fake_devices_exist():
    assert jax.device_count() == 8


def test_logits_identical_across_meshes(checkpoint):
    tokens = np.random.RandomState(1).randint(0, checkpoints.BASE["vocab_size"], (3, 13))
    results = {}
    for data, model in MESHES:
        lm = ttc_jax.load_lm(checkpoint, mesh=make_mesh(data, model))
        results[(data, model)] = np.asarray(lm.logits(tokens))
        if model > 1:
            # The model really is split: 4 groups of query heads, key and value over 4 devices.
            qkv_proj = lm.params["layers"][0]["attn"]["qkv_proj"]
            assert qkv_proj.sharding.spec == PartitionSpec(None, "model", None, None)
            assert len({s.device for s in qkv_proj.addressable_shards}) == 8
    for mesh, logits in results.items():
        np.testing.assert_allclose(logits, results[(1, 1)], atol=1e-5, err_msg=str(mesh))


def test_indivisible_axis_is_replicated():
    mesh = make_mesh(2, 4)
    spec = ShardingRules().spec(("embed", "heads", "head_dim"), (576, 9, 64), mesh)
    assert spec == PartitionSpec(None, None, None)
    assert ShardingRules().spec(("embed", "heads", "head_dim"), (576, 8, 64), mesh) == (
        PartitionSpec(None, "model", None)
    )


def test_two_logical_axes_on_one_mesh_axis_is_an_error():
    with pytest.raises(ValueError, match="onto one mesh axis"):
        ShardingRules().spec(("heads", "mlp"))


def test_unknown_logical_axis_is_an_error():
    with pytest.raises(KeyError, match="no sharding rule"):
        ShardingRules().spec(("embed", "experts"))


def test_mesh_shapes_and_errors():
    assert dict(make_mesh(2, -1).shape) == {"data": 2, "model": 4}
    assert dict(mesh_from_config({"data": 8}).shape) == {"data": 8, "model": 1}
    with pytest.raises(ValueError, match="needs 16 devices"):
        make_mesh(4, 4)
    with pytest.raises(ValueError, match="unknown mesh axes"):
        mesh_from_config({"tensor": 2})
