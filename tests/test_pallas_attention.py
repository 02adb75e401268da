"""The fused attention kernel (run by Pallas' interpreter on a CPU) computes the same pieces as
the XLA attention, an engine using it gives the same samples, and it lowers for CUDA."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import engine_helpers
from ttc_jax.engine import Engine, SamplingConfig, kv_cache
from ttc_jax.engine.pallas_attention import attention_piece, block_size, key_splits
from ttc_jax.models.attention import partial_softmax


def xla_piece(q, keys_t, values, valid, end):
    """The reference: masked scores, `partial_softmax`, weighted sum, in float32."""
    q, keys_t, values = (x.astype(jnp.float32) for x in (q, keys_t, values))
    logits = jnp.einsum("bkmd,bkds->bkms", q, keys_t) * q.shape[-1] ** -0.5
    mask = (valid & (jnp.arange(keys_t.shape[-1]) < end))[:, None, None, :]
    weights, peak, total = partial_softmax(logits, mask)
    return jnp.einsum("bkms,bksd->bkmd", weights, values), peak, total


@pytest.mark.parametrize(
    "rows, length, end, dtype, atol",
    [
        (5, 64, 40, "float32", 1e-5),  # one key block, read only up to ``end``
        (70, 192, 150, "float32", 1e-5),  # three key blocks, two query blocks (padded)
        (4, 48, 48, "bfloat16", 2e-2),  # key blocks of 16, bfloat16 operands
    ],
)
def test_piece_equals_xla_attention(rows, length, end, dtype, atol):
    rng = np.random.default_rng(rows)
    shape = (3, 2)  # batch, kv heads
    head_dim = 16
    q = jnp.asarray(rng.normal(size=(*shape, rows, head_dim)), dtype)
    keys_t = jnp.asarray(rng.normal(size=(*shape, head_dim, length)), dtype)
    values = jnp.asarray(rng.normal(size=(*shape, length, head_dim)), dtype)
    valid = jnp.asarray(rng.random((shape[0], length)) < 0.7)
    got = attention_piece(q, keys_t, values, valid, end, interpret=True)
    want = xla_piece(q, keys_t, values, valid, end)
    assert [x.shape for x in got] == [x.shape for x in want]
    assert all(x.dtype == jnp.float32 for x in got)
    # Compare normalised outputs (the unnormalised ones scale with the max) and the pieces.
    np.testing.assert_allclose(got[0] / got[2], want[0] / want[2], atol=atol)
    np.testing.assert_allclose(got[1], want[1], atol=atol)
    np.testing.assert_allclose(got[2] / want[2], 1.0, atol=atol)


def test_key_blocks_past_end_are_never_read():
    # What makes the kernel cheap early in a generation: it stops at the written slots.
    rng = np.random.default_rng(7)
    q = jnp.asarray(rng.normal(size=(1, 1, 4, 16)), jnp.float32)
    keys_t = jnp.asarray(rng.normal(size=(1, 1, 16, 192)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(1, 1, 192, 16)), jnp.float32)
    valid = jnp.ones((1, 192), bool)
    clean = attention_piece(q, keys_t, values, valid, 70, interpret=True)
    poisoned = attention_piece(  # blocks of 64: slots from 128 on lie past end's block
        q,
        keys_t.at[..., 128:].set(jnp.nan),
        values.at[:, :, 128:].set(jnp.nan),
        valid,
        70,
        interpret=True,
    )
    for a, b in zip(clean, poisoned, strict=True):
        np.testing.assert_array_equal(a, b)


def test_block_sizes_and_key_splits():
    assert [block_size(n) for n in (16, 48, 64, 192, 1536)] == [16, 16, 64, 64, 64]
    # Few programs (one prompt, few query blocks): split the keys; many: do not.
    assert key_splits(programs=8, key_blocks=24) == 24
    assert key_splits(programs=128, key_blocks=24) == 2
    assert key_splits(programs=100, key_blocks=3) == 1  # 3 does not divide into 2
    assert key_splits(programs=2048, key_blocks=4) == 1
    with pytest.raises(ValueError, match="multiple of 16"):
        block_size(40)


def _search_rounds(lm, attention):
    """Stages, stop strings (paused samples leave holes) and reorders."""
    prompts = engine_helpers.prompts(15, [6, 11])
    sampling = SamplingConfig(temperature=1.0)
    engine = Engine(lm, suffix_stage=16, attention=attention)
    state = engine.start(engine.layout(prompts), 3, 32, seed=9)
    tokens = []
    for _ in range(3):
        state, out = engine.extend(
            state, max_tokens=8, token_limit=32, sampling=sampling, stop=("\n",)
        )
        tokens.append(engine.new_tokens(out, len(prompts)))
        state = engine.reorder(state, np.array([[2, 0, 0], [1, 1, 2]]))
    return tokens, np.asarray(state.logprob), state.cache.capacity


def test_engine_with_the_kernel_matches_xla_through_search_rounds():
    # head_dim 16: the smallest the compiled kernel takes, so this runs on a GPU as well.
    lm = engine_helpers.tiny_lm(scale_logits=False, head_dim=16)
    xla_tokens, xla_logprob, xla_capacity = _search_rounds(lm, "xla")
    tokens, logprob, capacity = _search_rounds(lm, "pallas")
    assert tokens == xla_tokens
    assert capacity == xla_capacity == 32  # the rounds crossed a stage
    np.testing.assert_allclose(logprob, xla_logprob, atol=1e-4)


@pytest.mark.parametrize(
    "data, model, kv_heads",
    [
        (2, 4, 4),  # questions over 2 devices, kv heads over 4
        (8, 1, 4),  # questions (padded to 8 rows) over 8 devices
        (2, 4, 2),  # 2 kv heads do not split 4 ways: kept whole on each device
    ],
)
def test_engine_with_the_kernel_on_a_mesh_matches_xla(data, model, kv_heads):
    """On several devices each runs the kernel on its share of the cache (the 8 fake CPU
    devices, also where the default backend is a GPU)."""
    from ttc_jax.sharding import make_mesh

    mesh = make_mesh(data=data, model=model, devices=jax.devices("cpu"))
    lm = engine_helpers.tiny_lm(
        mesh=mesh, scale_logits=False, head_dim=16, num_heads=8, num_kv_heads=kv_heads
    )
    xla_tokens, xla_logprob, _ = _search_rounds(lm, "xla")
    tokens, logprob, _ = _search_rounds(lm, "pallas")
    assert tokens == xla_tokens
    np.testing.assert_allclose(logprob, xla_logprob, atol=1e-4)


def test_kernel_calls_on_a_mesh_run_per_device():
    from ttc_jax.sharding import make_mesh

    lm = engine_helpers.tiny_lm(mesh=make_mesh(2, 4, devices=jax.devices("cpu")), head_dim=16)
    engine = Engine(lm, attention="pallas")
    state = engine.start(engine.layout(engine_helpers.prompts(16, [9])), 4, 64, seed=0)
    args, static = engine.extend_arguments(
        state, max_tokens=8, token_limit=8, sampling=SamplingConfig()
    )
    with jax.set_mesh(lm.mesh):
        jaxpr = str(engine._extend.trace(*args, **static).jaxpr)
    # Two pieces per layer, each a per-device map around the kernel call (the printed jaxpr
    # shows each distinct kernel once).
    assert jaxpr.count("shard_map[") == 2 * lm.config.num_layers
    assert jaxpr.index("shard_map[") < jaxpr.index("pallas_call[")


def test_engine_rejects_unknown_attention_and_bad_stages():
    lm = engine_helpers.tiny_lm()
    with pytest.raises(ValueError, match="attention must be one of"):
        Engine(lm, attention="flash")
    with pytest.raises(ValueError, match="suffix_stage % 16"):
        Engine(lm, suffix_stage=8, attention="pallas")


def test_engine_refuses_the_kernel_on_a_tpu(monkeypatch):
    lm = engine_helpers.tiny_lm()
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    with pytest.raises(ValueError, match="needs a GPU, not 'tpu'"):
        Engine(lm, attention="pallas")
    assert Engine(lm).attention == "xla"  # the portable default is fine there


@pytest.mark.parametrize("mesh_shape", [(1, 1), (2, 2)])
def test_decode_program_with_the_kernel_lowers_for_cuda(monkeypatch, mesh_shape):
    """Pallas' Triton lowering (power-of-two loads, supported operations) runs here, without a
    GPU: the whole decode program with the kernel lowers for CUDA, one kernel call per piece,
    on one device and split over four."""
    from ttc_jax.sharding import make_mesh

    mesh = make_mesh(*mesh_shape, devices=jax.devices("cpu"))
    lm = engine_helpers.tiny_lm(
        mesh=mesh, head_dim=64, num_heads=4, num_kv_heads=2, hidden_size=128
    )
    engine = Engine(lm, attention="pallas")
    state = engine.start(engine.layout(engine_helpers.prompts(16, [9])), 4, 64, seed=0)
    args, static = engine.extend_arguments(
        state, max_tokens=8, token_limit=8, sampling=SamplingConfig()
    )
    # The kernel runs interpreted on CPU devices; claim otherwise to trace the compiled kernel.
    monkeypatch.setattr(kv_cache, "_interpreted", lambda mesh: False)
    with jax.set_mesh(lm.mesh):
        traced = engine._extend.trace(*args, **static)
        text = traced.lower(lowering_platforms=("cuda",)).as_text()
    # Two kernels (prefix and suffix shapes), each called once per layer.
    assert text.count("__gpu$xla.gpu.triton") == 2
    calls = re.findall(r"call @(attention_piece\w*)", text)
    assert len(calls) == 2 * lm.config.num_layers and len(set(calls)) == 2
