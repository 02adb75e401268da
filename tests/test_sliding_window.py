"""Sliding-window layers: the engine's shared-prefix cache, its step-wise API and the fused
kernel show a sample exactly what a full forward pass shows it, with a window shorter than the
prompt; and a Mistral whose window is shorter than the input matches transformers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ttc_jax
from tests import checkpoints, engine_helpers
from tests.test_kv_cache import CachedModel
from tests.test_pallas_attention import _search_rounds
from ttc_jax.engine import Engine, SamplingConfig, default_engine, kv_cache
from ttc_jax.engine.pallas_attention import attention_piece
from ttc_jax.models.attention import partial_softmax
from ttc_jax.sharding import make_mesh

WINDOW = 4
# Layer 0 slides with its own RoPE base, layer 1 is global (as Gemma 3 interleaves them).
WINDOWED = dict(sliding_window=WINDOW, sliding_layers=(True, False), local_rope_theta=100.0)


@pytest.fixture(scope="module")
def lm():
    return engine_helpers.tiny_lm(scale_logits=False, **WINDOWED)


def test_the_window_changes_the_full_forward_pass(lm):
    # Otherwise every test below would pass with the window ignored.
    tokens = np.asarray(engine_helpers.prompts(0, [12]))
    unwindowed = ttc_jax.LanguageModel(
        lm.config.replace(sliding_window=10_000), lm.params, lm.mesh, lm.rules, lm.dtype
    )
    windowed, full = np.asarray(lm.logits(tokens)), np.asarray(unwindowed.logits(tokens))
    np.testing.assert_allclose(windowed[0, :WINDOW], full[0, :WINDOW], atol=1e-5)
    assert np.abs(windowed[0, WINDOW:] - full[0, WINDOW:]).max() > 1e-2


def test_cached_decoding_over_a_prompt_longer_than_the_window_equals_full_forward(lm):
    model = CachedModel(lm)
    sequences = engine_helpers.prompts(1, [24, 24])
    prompt_lengths = [9, 3]  # one prompt longer than the window, one shorter
    reference = np.asarray(lm.logits(np.asarray(sequences)))
    cache = model.prefill(
        [s[:n] for s, n in zip(sequences, prompt_lengths, strict=True)], 12, 1, 32
    )
    cursor = list(prompt_lengths)
    for step in range(10):
        # Question 1 pauses at steps 2 and 5: it writes nothing and its window stays put.
        valid = np.array([True, step not in (2, 5)])
        tokens = np.array([sequences[b][cursor[b]] for b in range(2)])
        hidden, cache = model.append(cache, tokens[:, None, None], valid[:, None, None])
        logits = model.logits(hidden[:, 0])[:, 0]
        for b in range(2):
            if valid[b]:
                np.testing.assert_allclose(logits[b], reference[b, cursor[b]], atol=1e-4)
                cursor[b] += 1
    # Several tokens at once: each sees its own window across prefix and suffix.
    chunk = np.stack([sequences[b][cursor[b] : cursor[b] + 5] for b in range(2)])
    hidden, cache = model.append(cache, chunk[:, None], np.ones((2, 1, 5), bool))
    logits = model.logits(hidden[:, 0])
    for b in range(2):
        np.testing.assert_allclose(logits[b], reference[b, cursor[b] : cursor[b] + 5], atol=1e-4)


@pytest.mark.parametrize("attention", ["xla", "pallas"])
def test_stepwise_extend_reorder_and_rollback_score_as_full_forward(lm, attention):
    engine = Engine(lm, attention=attention)
    prompts = engine_helpers.prompts(2, [9, 6])
    sampling = SamplingConfig(temperature=1.0)
    state = engine.start(engine.layout(prompts), num_samples=3, capacity=64, seed=1)

    def step(state):
        return engine.extend(state, max_tokens=6, token_limit=64, sampling=sampling, stop="\n")

    state, first = step(state)
    history = engine.new_tokens(first, 2)
    indices = np.array([[2, 0, 0], [1, 1, 2]])
    state = engine.reorder(state, indices)
    history = [[history[b][i] for i in indices[b]] for b in range(2)]
    saved = engine.checkpoint(state)
    state, _ = step(state)  # a rollout, then undone
    state = engine.rollback(state, saved)
    state, second = step(state)
    new = engine.new_tokens(second, 2)
    for b, prompt in enumerate(prompts):
        for j in range(3):
            assert history[b][j] and new[b][j]
            expected = engine_helpers.full_logprobs(lm, prompt, history[b][j] + new[b][j])
            got = float(second.logprob[b, j])
            np.testing.assert_allclose(got, expected[len(history[b][j]) :].sum(), atol=1e-3)


def test_greedy_generation_equals_argmax_of_full_forward(lm):
    prompt = engine_helpers.prompts(3, [10])[0]
    sample = ttc_jax.generate(lm, [prompt], max_new_tokens=12, temperature=0)[0][0]
    tokens = list(prompt)
    for _ in range(12):
        tokens.append(int(np.asarray(lm.logits([tokens]))[0, -1].argmax()))
    assert sample.token_ids == tokens[len(prompt) :]
    pallas = Engine(lm, attention="pallas")
    fused = ttc_jax.generate(lm, [prompt], max_new_tokens=12, temperature=0, engine=pallas)
    assert fused[0][0].token_ids == sample.token_ids
    assert default_engine(lm) is not pallas


def test_kernel_skips_nothing_a_row_may_read_and_reads_nothing_before_its_window():
    rng = np.random.default_rng(3)
    rows, length, end = 20, 192, 180
    q = jnp.asarray(rng.normal(size=(2, 2, rows, 16)), jnp.float32)
    keys_t = jnp.asarray(rng.normal(size=(2, 2, 16, length)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(2, 2, length, 16)), jnp.float32)
    valid = jnp.ones((2, length), bool)
    first = jnp.asarray(rng.integers(70, 170, size=(2, rows)), jnp.int32)
    got = attention_piece(q, keys_t, values, valid, end, first, interpret=True)
    # The reference masks the slots before each row's first; the kernel must agree even
    # though slots 0-63 (a whole key block before every row's window) hold NaNs for it.
    logits = jnp.einsum("bkmd,bkds->bkms", q, keys_t) * 16**-0.5
    slots = jnp.arange(length)
    mask = (valid[:, None, :] & (slots < end) & (slots >= first[..., None]))[:, None]
    weights, peak, total = partial_softmax(logits, mask)
    attended = jnp.einsum("bkms,bksd->bkmd", weights, values)
    poisoned = attention_piece(
        q,
        keys_t.at[..., :64].set(jnp.nan),
        values.at[:, :, :64].set(jnp.nan),
        valid,
        end,
        first,
        interpret=True,
    )
    np.testing.assert_allclose(got[0] / got[2], attended / total, atol=1e-5)
    np.testing.assert_allclose(got[1], peak, atol=1e-5)
    for a, b in zip(got, poisoned, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mistral_with_a_window_shorter_than_the_input_matches_transformers(tmp_path):
    model = checkpoints.hf_model("mistral", sliding_window=5)
    lm = ttc_jax.load_lm(checkpoints.save_hf(model, tmp_path))
    assert lm.config.window(0) == 5 and lm.config.window(1) == 5
    tokens = np.random.RandomState(0).randint(0, checkpoints.BASE["vocab_size"], (2, 21))
    np.testing.assert_allclose(
        np.asarray(lm.logits(tokens)), checkpoints.torch_logits(model, tokens), atol=1e-4
    )


def test_the_kernel_on_a_mesh_honours_the_window_as_xla_does():
    # Questions over 2 devices, kv heads over 4: each device's kernel gets its rows' starts.
    mesh = make_mesh(2, 4, devices=jax.devices("cpu"))
    lm = engine_helpers.tiny_lm(mesh=mesh, scale_logits=False, head_dim=16, **WINDOWED)
    xla_tokens, xla_logprob, _ = _search_rounds(lm, "xla")
    tokens, logprob, _ = _search_rounds(lm, "pallas")
    assert tokens == xla_tokens
    np.testing.assert_allclose(logprob, xla_logprob, atol=1e-4)


@pytest.mark.parametrize("mesh_shape", [(1, 1), (2, 2)])
def test_the_decode_program_with_windows_lowers_for_cuda(monkeypatch, mesh_shape):
    """The kernel's window starts pass Pallas' Triton lowering (no GPU needed to check)."""
    mesh = make_mesh(*mesh_shape, devices=jax.devices("cpu"))
    lm = engine_helpers.tiny_lm(
        mesh=mesh, head_dim=64, num_heads=4, num_kv_heads=2, hidden_size=128, **WINDOWED
    )
    engine = Engine(lm, attention="pallas")
    state = engine.start(engine.layout(engine_helpers.prompts(16, [9])), 4, 64, seed=0)
    args, static = engine.extend_arguments(
        state, max_tokens=8, token_limit=8, sampling=SamplingConfig()
    )
    monkeypatch.setattr(kv_cache, "_interpreted", lambda mesh: False)
    with jax.set_mesh(lm.mesh):
        text = engine._extend.trace(*args, **static).lower(lowering_platforms=("cuda",)).as_text()
    assert len(re.findall(r"call @(attention_piece\w*)", text)) == 2 * lm.config.num_layers
