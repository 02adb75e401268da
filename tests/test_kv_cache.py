"""The shared-prefix KV cache gives the logits of a full forward pass at every position."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import engine_helpers
from ttc_jax.engine import kv_cache


class CachedModel:
    """Jitted prefill/append/logits of one tiny model (eager dispatch would dominate)."""

    def __init__(self, lm):
        self.lm = lm
        merge = functools.partial(nnx.merge, lm.graphdef)
        self._prefill = jax.jit(
            lambda p, t, v, n, c: kv_cache.prefill(merge(p), t, v, n, c), static_argnums=(3, 4)
        )
        self._append = jax.jit(lambda p, cache, t, v: kv_cache.append(merge(p), cache, t, v))
        self._logits = jax.jit(lambda p, h: merge(p).logits(h))

    def prefill(self, prompts, width, num_samples, capacity):
        tokens = np.zeros((len(prompts), width), np.int32)
        valid = np.zeros((len(prompts), width), bool)
        for row, prompt in enumerate(prompts):
            tokens[row, width - len(prompt) :] = prompt
            valid[row, width - len(prompt) :] = True
        return self._prefill(self.lm.params, tokens, valid, num_samples, capacity)

    def append(self, cache, tokens, valid):
        return self._append(self.lm.params, cache, jnp.asarray(tokens), jnp.asarray(valid))

    def logits(self, hidden):
        return np.asarray(self._logits(self.lm.params, hidden))


@pytest.mark.parametrize("grow_by", [3, 0])
def test_token_by_token_at_own_positions_and_growth_equals_full_forward(grow_by):
    # grow_by=3: the suffix starts at 3 slots and grows between appends, as the engine grows
    # it between decode stages; 0: one allocation of 32 slots up front.
    lm = engine_helpers.tiny_lm()
    model = CachedModel(lm)
    sequences = engine_helpers.prompts(0, [30, 30])
    prompt_lengths = [6, 13]
    reference = np.asarray(lm.logits(np.asarray(sequences)))
    prompts = [s[:n] for s, n in zip(sequences, prompt_lengths, strict=True)]
    cache = model.prefill(prompts, 16, 1, grow_by or 32)
    cursor = list(prompt_lengths)

    def fit(cache, tokens):
        while int(cache.suffix_len.max()) + tokens > cache.capacity:
            cache = kv_cache.grow(cache, cache.capacity + grow_by)
        return cache

    # Question 0 skips steps 2 and 3, as a paused search beam would: it writes nothing then.
    for step in range(8):
        valid = np.array([step not in (2, 3), True])
        tokens = np.array([sequences[b][cursor[b]] for b in range(2)])
        cache = fit(cache, 1)
        hidden, cache = model.append(cache, tokens[:, None, None], valid[:, None, None])
        logits = model.logits(hidden[:, 0])[:, 0]
        for b in range(2):
            if valid[b]:
                np.testing.assert_allclose(logits[b], reference[b, cursor[b]], atol=1e-4)
                cursor[b] += 1
    chunk = np.stack([sequences[b][cursor[b] : cursor[b] + 5] for b in range(2)])
    cache = fit(cache, 5)
    hidden, cache = model.append(cache, chunk[:, None], np.ones((2, 1, 5), bool))
    logits = model.logits(hidden[:, 0])
    for b in range(2):
        np.testing.assert_allclose(logits[b], reference[b, cursor[b] : cursor[b] + 5], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(cache.suffix_len)[:, 0], [6 + 5, 8 + 5])
    # No holes: each row's tokens fill its first slots.
    written = np.asarray(cache.suffix_valid())
    np.testing.assert_array_equal(written.sum(axis=1), [11, 13])
    assert written[0, :11].all() and written[1, :13].all()


def test_stage_capacities():
    stages = [kv_cache.stage_capacity(n, 10_000, first=64) for n in (1, 64, 65, 193, 257, 385)]
    assert stages == [64, 64, 128, 256, 384, 512]
    sizes = sorted({kv_cache.stage_capacity(n, 10_000, first=4) for n in range(1, 200)})
    assert sizes == [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    assert kv_cache.stage_capacity(300, 256, first=64) == 256  # capped at the limit
    with pytest.raises(ValueError, match="must be >= 1"):
        kv_cache.stage_capacity(0, 256)


def test_grow_keeps_the_suffix_and_refuses_to_shrink():
    model = CachedModel(engine_helpers.tiny_lm())
    cache = model.prefill(engine_helpers.prompts(2, [9]), 16, 2, 4)
    _, cache = model.append(cache, np.ones((1, 2, 3), np.int32), np.ones((1, 2, 3), bool))
    grown = kv_cache.grow(cache, 10)
    assert grown.capacity == 10
    np.testing.assert_array_equal(grown.suffix_len, [[3, 3]])
    np.testing.assert_array_equal(grown.suffix_k[0][..., :4], cache.suffix_k[0])
    np.testing.assert_array_equal(grown.suffix_v[0][:, :, :4], cache.suffix_v[0])
    assert not np.asarray(grown.suffix_k[0][..., 4:]).any()
    np.testing.assert_array_equal(grown.suffix_valid()[0], [1, 1, 1] + [0] * 7)
    assert grown.kv_bytes()["suffix"] == cache.kv_bytes(capacity=10)["suffix"]
    with pytest.raises(ValueError, match="cannot shrink"):
        kv_cache.grow(cache, 3)


def test_prefix_is_stored_once_per_question():
    lm = engine_helpers.tiny_lm()
    cache = CachedModel(lm).prefill(engine_helpers.prompts(1, [20]), 32, 64, 16)
    cfg = lm.config
    layer_bytes = cfg.num_kv_heads * cfg.head_dim * 4 * 2 * cfg.num_layers
    assert cache.kv_bytes() == {"prefix": 32 * layer_bytes, "suffix": 64 * 16 * layer_bytes}


def test_reorder_gathers_suffixes():
    model = CachedModel(engine_helpers.tiny_lm())
    cache = model.prefill(engine_helpers.prompts(2, [9]), 16, 3, 8)
    tokens = np.asarray(engine_helpers.prompts(3, [3]))[:, :, None]  # 3 samples, 1 token each
    _, cache = model.append(cache, tokens, np.ones((1, 3, 1), bool))
    moved = kv_cache.reorder(cache, jnp.asarray([[2, 2, 0, 1]]))
    assert moved.suffix_k[0].shape[0] == 4  # rows: one question, four samples
    np.testing.assert_array_equal(moved.suffix_k[1][1], cache.suffix_k[1][2])
    np.testing.assert_array_equal(moved.suffix_v[0][3], cache.suffix_v[0][1])
    np.testing.assert_array_equal(moved.suffix_len[0], [1, 1, 1, 1])
    np.testing.assert_array_equal(moved.prefix_k[0], cache.prefix_k[0])
