"""The plain broadcast-cache decode loop samples from the model's own distribution."""

import jax
import numpy as np
import pytest

from tests.engine_helpers import full_logprobs, prompts, tiny_lm
from ttc_jax.bench import plain_loop

SAMPLES, NEW_TOKENS = 3, 12


@pytest.fixture(scope="module")
def lm():
    # Unscaled head: near-uniform distributions make samples differ across seeds and samples.
    return tiny_lm(scale_logits=False)


@pytest.mark.parametrize("prompt_len", [1, 7])
def test_logprobs_match_a_full_forward_pass(lm, prompt_len):
    (prompt,) = prompts(0, [prompt_len])
    tokens, logprobs = plain_loop.plain_loop_sample(
        lm, prompt, SAMPLES, NEW_TOKENS, seed=1, return_logprobs=True
    )
    assert tokens.shape == logprobs.shape == (SAMPLES, NEW_TOKENS)
    assert tokens.dtype == np.int32 and logprobs.dtype == np.float32
    for n in range(SAMPLES):
        expected = full_logprobs(lm, prompt, tokens[n].tolist())
        np.testing.assert_allclose(logprobs[n], expected, atol=1e-4)


def test_bfloat16_model_runs_and_keeps_its_dtype():
    # The shapes of the bfloat16 case below, so the prefill compiles once for both tests.
    lm = tiny_lm(dtype="bfloat16")
    (prompt,) = prompts(2, [9])
    cache = plain_loop.plain_loop_prefill(lm, prompt, SAMPLES, NEW_TOKENS)
    assert all(a.dtype == jax.numpy.bfloat16 for a in cache.k + cache.v)
    tokens = plain_loop.plain_loop_sample(lm, prompt, SAMPLES, NEW_TOKENS, seed=0)
    assert tokens.shape == (SAMPLES, NEW_TOKENS)
    assert ((tokens >= 0) & (tokens < lm.config.vocab_size)).all()


def test_samples_are_deterministic_per_seed_and_differ_across_seeds(lm):
    (prompt,) = prompts(1, [7])
    first = plain_loop.plain_loop_sample(lm, prompt, SAMPLES, NEW_TOKENS, seed=3)
    again = plain_loop.plain_loop_sample(lm, prompt, SAMPLES, NEW_TOKENS, seed=3)
    other = plain_loop.plain_loop_sample(lm, prompt, SAMPLES, NEW_TOKENS, seed=4)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    # Samples of one call draw independent noise: identical rows would mean a shared key.
    assert len({tuple(row) for row in first}) == SAMPLES


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kv_bytes_match_the_allocated_cache(dtype):
    lm = tiny_lm(dtype=dtype)
    prompt_len, samples, new_tokens = 9, 4, 5
    (prompt,) = prompts(2, [prompt_len])
    cache = plain_loop.plain_loop_prefill(lm, prompt, samples, new_tokens)
    cfg = lm.config
    slots = prompt_len - 1 + new_tokens
    assert all(
        a.shape == (samples, cfg.num_kv_heads, slots, cfg.head_dim) for a in cache.k + cache.v
    )
    expected = plain_loop.plain_loop_kv_bytes(cfg, lm.dtype, samples, prompt_len, new_tokens)
    assert cache.nbytes() == expected
    itemsize = np.dtype(lm.dtype).itemsize
    per_sample_slot = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * itemsize
    assert expected == samples * slots * per_sample_slot


def test_prompt_kv_is_broadcast_to_every_sample(lm):
    (prompt,) = prompts(3, [6])
    cache = plain_loop.plain_loop_prefill(lm, prompt, SAMPLES, NEW_TOKENS)
    for layer in cache.k + cache.v:
        layer = np.asarray(layer)
        np.testing.assert_array_equal(
            layer[1:, :, :5], np.broadcast_to(layer[:1, :, :5], layer[1:, :, :5].shape)
        )
        assert np.abs(layer[:, :, :5]).sum() > 0
        assert not layer[:, :, 5:].any()


def test_decode_refuses_a_cache_of_the_wrong_size(lm):
    (prompt,) = prompts(3, [6])
    cache = plain_loop.plain_loop_prefill(lm, prompt, SAMPLES, NEW_TOKENS)
    with pytest.raises(ValueError, match="slots"):
        plain_loop.plain_loop_decode(lm, cache, prompt[-1], len(prompt) + 1, NEW_TOKENS, seed=0)
