"""Sampling is right, not just plausible: exact masks and chi-square agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ttc_jax
from tests import engine_helpers
from ttc_jax.engine.sampling import (
    SamplingConfig,
    SamplingMode,
    filter_logits,
    filtered_logits,
    invert_cdf,
    prompt_digest,
    sample_keys,
    sample_tokens,
)

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = jnp.log(jnp.asarray(PROBS, jnp.float32))[None]


def _kept(cfg):
    """Kept tokens of LOGITS, asserting the reference and the candidate path (with every
    candidate count above top-k, so the whole-vocabulary fallback runs too) agree."""
    scaled = LOGITS / cfg.temperature
    reference = np.isfinite(np.asarray(filter_logits(scaled, cfg.params()))[0])
    for candidates in range(cfg.top_k + 1, 5):
        fast = filtered_logits(LOGITS, SamplingMode(candidates), cfg.params())
        assert np.isfinite(np.asarray(fast)[0]).tolist() == reference.tolist(), candidates
    return reference.tolist()


def test_top_p_keeps_smallest_set_reaching_mass():
    assert _kept(SamplingConfig(top_p=0.8)) == [True, True, False, False]
    assert _kept(SamplingConfig(top_p=0.81)) == [True, True, True, False]
    assert _kept(SamplingConfig(top_p=0.5)) == [True, False, False, False]
    assert _kept(SamplingConfig(top_p=0.1)) == [True, False, False, False]
    assert _kept(SamplingConfig(top_p=1.0)) == [True] * 4


def test_top_k_and_temperature():
    assert _kept(SamplingConfig(top_k=2)) == [True, True, False, False]
    assert _kept(SamplingConfig(top_k=3, top_p=0.5)) == [True, False, False, False]
    # Temperature applies before top-p: at T=2 the distribution flattens, more mass is needed.
    assert _kept(SamplingConfig(temperature=2.0, top_p=0.8)) == [True, True, True, False]
    cfg = SamplingConfig(temperature=0.5)
    filtered = np.asarray(filtered_logits(LOGITS, cfg.mode(4), cfg.params()))[0]
    np.testing.assert_allclose(filtered, np.log(PROBS) / 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    ("top_p", "top_k"), [(0.5, 0), (0.9, 0), (0.99, 0), (1.0, 5), (0.9, 50), (0.3, 20)]
)
def test_candidate_path_gives_the_reference_logits_on_random_rows(top_p, top_k):
    """Peaked and flat rows: some nuclei fit in 64 candidates, others need the fallback."""
    rng = np.random.default_rng(top_k)
    scale = np.repeat([0.5, 3.0, 8.0, 20.0], 16)[:, None]
    logits = jnp.asarray(rng.normal(size=(64, 1000)) * scale, jnp.float32)
    cfg = SamplingConfig(temperature=0.8, top_p=top_p, top_k=top_k)
    reference = filter_logits(logits / 0.8, cfg.params())
    fast = filtered_logits(logits, SamplingMode(64), cfg.params())
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(reference))
    np.testing.assert_allclose(
        np.where(np.isfinite(fast), fast, 0), np.where(np.isfinite(reference), reference, 0)
    )
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(64))
    np.testing.assert_array_equal(
        sample_tokens(logits, keys, SamplingMode(64), cfg.params()),
        sample_tokens(logits, keys, SamplingMode(1000), cfg.params()),
    )


@pytest.mark.parametrize(
    "bad",
    [
        dict(temperature=-1),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(temperature="0.7"),
        dict(top_p=0),
        dict(top_p=float("nan")),
        dict(top_k=-2),
        dict(top_k=2.5),
    ],
)
def test_invalid_sampling_config(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**bad)


def _chi_square_bound(dof: int) -> float:
    """Wilson-Hilferty approximation of the chi-square 0.999 quantile."""
    z = 3.09
    return dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3


def _assert_matches(counts: np.ndarray, probs: np.ndarray):
    """Chi-square goodness of fit, pooling cells expected to hold fewer than 5 draws."""
    total = counts.sum()
    expected = probs * total
    assert counts[expected == 0].sum() == 0, "drew a token of probability zero"
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    keep = expected > 0
    stat = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    assert stat < _chi_square_bound(int(keep.sum()) - 1), stat


@pytest.mark.parametrize(
    "cfg",
    [SamplingConfig(), SamplingConfig(temperature=0.6, top_k=3), SamplingConfig(top_p=0.81)],
)
def test_sampler_frequencies_on_hand_made_logits(cfg):
    draws = 20000
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(7), i))(jnp.arange(draws))
    # Few candidates, so the top-p case draws through the whole-vocabulary fallback.
    mode = (
        SamplingMode(cfg.top_k + 1 if cfg.top_k else 2)
        if cfg.top_p < 1 or cfg.top_k
        else SamplingMode()
    )
    tokens = np.asarray(sample_tokens(jnp.repeat(LOGITS, draws, 0), keys, mode, cfg.params()))
    target = np.asarray(jax.nn.softmax(filter_logits(LOGITS / cfg.temperature, cfg.params())))[0]
    _assert_matches(np.bincount(tokens, minlength=4), target)


def test_generated_first_tokens_follow_softmax_of_logits_over_temperature():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    lm.params["lm_head"] = lm.params["lm_head"] * 4.0  # peaked enough to test the shape
    prompt = engine_helpers.prompts(4, [7])[0]
    temperature = 0.7
    samples = ttc_jax.generate(lm, [prompt], n=4096, max_new_tokens=1, temperature=temperature)
    firsts = np.array([s.token_ids[0] for s in samples[0]])
    logits = np.asarray(lm.logits([prompt]))[0, -1].astype(np.float64)
    probs = np.exp((logits - logits.max()) / temperature)
    _assert_matches(np.bincount(firsts, minlength=lm.config.vocab_size), probs / probs.sum())


def test_sample_keys_depend_on_the_seed_the_prompt_and_the_sample_index_alone():
    digests = jnp.asarray([prompt_digest([5, 6, 7]), prompt_digest([8]), 0], jnp.uint32)
    keys = np.asarray(sample_keys(3, digests, 4))
    alone = np.asarray(sample_keys(3, digests[1:2], 2))
    np.testing.assert_array_equal(alone, keys[1:2, :2])
    assert len({tuple(k) for k in keys.reshape(-1, 2)}) == 3 * 4
    assert not np.array_equal(np.asarray(sample_keys(4, digests, 4)), keys)
    assert prompt_digest([5, 6, 7]) == prompt_digest(np.array([5, 6, 7], np.int32))
    assert prompt_digest([5, 6, 7]) != prompt_digest([5, 6, 8])


@pytest.mark.parametrize("vocab", [5, 300, 1024])  # one short block, a padded one, four
def test_cdf_inversion_picks_the_token_where_the_mass_crosses_the_draw(vocab):
    rng = np.random.default_rng(vocab)
    logits = rng.normal(size=(1, vocab)) * 2
    logits[0, rng.choice(vocab, vocab // 3, replace=False)] = -np.inf  # removed tokens
    uniforms = np.linspace(0, 1, 2001, endpoint=False)
    tokens = np.asarray(
        invert_cdf(jnp.asarray(np.repeat(logits, len(uniforms), 0), jnp.float32), uniforms)
    )
    probs = np.exp(logits[0] - logits[0].max())
    bounds = np.cumsum(probs / probs.sum())
    expected = np.searchsorted(bounds, uniforms, side="right")
    clear = np.min(np.abs(bounds[:, None] - uniforms[None]), axis=0) > 1e-5  # off the edges
    np.testing.assert_array_equal(tokens[clear], expected[clear])
    assert np.isfinite(logits[0, tokens]).all()


def test_cdf_inversion_never_draws_a_removed_token_at_the_top_of_the_range():
    logits = np.zeros((1, 600), np.float32)
    logits[0, 250:] = -np.inf  # the last blocks hold no mass at all
    uniforms = np.array([0.0, 0.5, np.nextafter(np.float32(1), np.float32(0))], np.float32)
    tokens = np.asarray(invert_cdf(jnp.asarray(np.repeat(logits, 3, 0)), uniforms))
    assert tokens.tolist()[0] == 0 and (tokens < 250).all() and tokens[-1] >= 248
