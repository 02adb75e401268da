"""The decode loop: tokens and log-probabilities agree with full forward passes, step-wise
extension and beam reordering continue correctly, and samples do not depend on the mesh."""

import jax.numpy as jnp
import numpy as np
import pytest

import ttc_jax
from tests import engine_helpers
from ttc_jax.bucketing import bucket_count, bucket_length
from ttc_jax.engine import Finish, SamplingConfig, default_engine


def test_logprobs_of_sampled_tokens_equal_full_forward():
    lm = engine_helpers.tiny_lm()
    prompts = engine_helpers.prompts(0, [5, 11, 3])
    results = ttc_jax.generate(lm, prompts, n=3, max_new_tokens=12, temperature=1.0, seed=4)
    assert len(results) == 3 and all(len(r) == 3 for r in results)
    for prompt, samples in zip(prompts, results, strict=True):
        assert len({tuple(s.token_ids) for s in samples}) > 1  # samples differ
        for sample in samples:
            assert len(sample.token_ids) == 12 and sample.finish_reason == "length"
            expected = engine_helpers.full_logprobs(lm, prompt, sample.token_ids)
            np.testing.assert_allclose(sample.logprob, expected.sum(), atol=1e-3)


def test_greedy_equals_argmax_of_full_forward():
    lm = engine_helpers.tiny_lm()
    prompt = engine_helpers.prompts(1, [9])[0]
    sample = ttc_jax.generate(lm, [prompt], n=2, max_new_tokens=10, temperature=0)[0]
    assert sample[0].token_ids == sample[1].token_ids
    tokens = list(prompt)
    for _ in range(10):
        tokens.append(int(np.asarray(lm.logits([tokens]))[0, -1].argmax()))
    assert sample[0].token_ids == tokens[len(prompt) :]


def test_eos_stops_a_sample_and_is_not_in_the_text():
    lm = engine_helpers.tiny_lm()
    prompt = engine_helpers.prompts(2, [6])[0]
    greedy = ttc_jax.generate(lm, [prompt], max_new_tokens=8, temperature=0)[0][0]
    eos = greedy.token_ids[3]
    first = greedy.token_ids.index(eos)
    lm_eos = engine_helpers.tiny_lm(eos_token_ids=(eos,))
    sample = ttc_jax.generate(lm_eos, [prompt], max_new_tokens=8, temperature=0)[0][0]
    assert sample.finish_reason == "eos"
    assert sample.token_ids == greedy.token_ids[: first + 1]
    assert sample.text == lm.tokenizer.decode(greedy.token_ids[:first])


def test_stop_string_ends_samples_after_the_delimiter():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    prompts = engine_helpers.prompts(3, [4, 8])
    results = ttc_jax.generate(lm, prompts, n=16, max_new_tokens=40, stop=["\n"], seed=1)
    reasons = [s.finish_reason for r in results for s in r]
    assert "stop" in reasons
    for sample in (s for r in results for s in r):
        if sample.finish_reason == "stop":
            assert sample.text.endswith("\n") and sample.text.count("\n") == 1
            assert engine_helpers.is_newline(sample.token_ids[-1])
        else:
            assert "\n" not in sample.text and len(sample.token_ids) == 40


def test_stepwise_extension_and_reorder_continue_exactly():
    """Two reasoning steps with a beam reorder between them: every token's log-probability
    still equals a full forward pass over prompt + the sample's own history."""
    lm = engine_helpers.tiny_lm(scale_logits=False)
    engine = default_engine(lm)
    prompts = engine_helpers.prompts(5, [6, 10])
    batch = engine.layout(prompts)
    sampling = SamplingConfig(temperature=1.0)
    state = engine.start(batch, num_samples=4, capacity=64, seed=2)
    state, first = engine.extend(
        state, max_tokens=16, token_limit=64, sampling=sampling, stop=("\n",)
    )
    first_tokens = engine.new_tokens(first, len(prompts))
    texts = engine.step_texts(first, len(prompts))
    assert texts[1][2] == lm.tokenizer.decode(first_tokens[1][2])
    finish = np.asarray(first.finish)
    assert (finish[:2] == Finish.STOP).any()
    indices = np.array([[1, 1, 0, 3], [2, 0, 0, 1]])
    for bad in (np.array([[0, 4]] * 2), np.array([0, 1]), np.zeros((3, 2), int) + 0.5):
        with pytest.raises(ValueError, match="indices must"):
            engine.reorder(state, bad)
    state = engine.reorder(state, indices)
    state, second = engine.extend(
        state, max_tokens=16, token_limit=64, sampling=sampling, stop=("\n",)
    )
    second_tokens = engine.new_tokens(second, len(prompts))
    for b, prompt in enumerate(prompts):
        for j in range(4):
            if finish[b, indices[b, j]] == Finish.STOP:
                assert texts[b][indices[b, j]].endswith("\n")
            history = first_tokens[b][indices[b, j]]
            new = second_tokens[b][j]
            # Samples that paused at "\n" or hit the round's token cap (RUNNING) go on.
            assert finish[b, indices[b, j]] in (Finish.STOP, Finish.RUNNING)
            assert len(new) > 0
            expected = engine_helpers.full_logprobs(lm, prompt, history + new)[len(history) :]
            np.testing.assert_allclose(float(second.logprob[b, j]), expected.sum(), atol=1e-3)
    # Copies of one beam diverge: they get fresh keys.
    copies = [second_tokens[b][j] for b, j in ((0, 0), (0, 1), (1, 1), (1, 2))]
    assert copies[0] != copies[1] or copies[2] != copies[3]


@pytest.mark.parametrize("mesh_shape", [(2, 4), (8, 1)])
def test_same_samples_on_every_mesh(mesh_shape):
    prompts = engine_helpers.prompts(6, [5, 9, 12])
    kwargs = dict(n=4, max_new_tokens=10, temperature=0.9, top_p=0.95, seed=3)
    single = ttc_jax.generate(engine_helpers.tiny_lm(), prompts, **kwargs)
    sharded_lm = engine_helpers.tiny_lm(mesh=ttc_jax.make_mesh(*mesh_shape))
    sharded = ttc_jax.generate(sharded_lm, prompts, **kwargs)
    for a, b in zip(single, sharded, strict=True):
        assert [s.token_ids for s in a] == [s.token_ids for s in b]
        np.testing.assert_allclose([s.logprob for s in a], [s.logprob for s in b], atol=1e-4)


def test_samples_do_not_depend_on_the_other_prompts_in_the_batch():
    lm = engine_helpers.tiny_lm()
    prompts = engine_helpers.prompts(7, [5, 30, 8])
    together = ttc_jax.generate(lm, prompts, n=2, max_new_tokens=6, seed=9)
    alone = ttc_jax.generate(lm, prompts[:1], n=2, max_new_tokens=6, seed=9)
    assert [s.token_ids for s in together[0]] == [s.token_ids for s in alone[0]]


def test_bad_input_is_rejected_clearly():
    lm = engine_helpers.tiny_lm()
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        ttc_jax.generate(lm, [[7], []])
    with pytest.raises(ValueError, match="outside"):
        ttc_jax.generate(lm, [[7, 999]])
    with pytest.raises(ValueError, match="non-empty list"):
        ttc_jax.generate(lm, "a string, not a list")
    with pytest.raises(ValueError, match="top_p"):
        ttc_jax.generate(lm, [[7]], top_p=1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ttc_jax.generate(lm, [[7]], max_new_tokens=0)
    with pytest.raises(ValueError, match="another language model"):
        ttc_jax.generate(lm, [[7]], engine=default_engine(engine_helpers.tiny_lm(seed=1)))


def test_shapes_are_bucketed():
    assert [bucket_length(n) for n in (1, 16, 17, 200, 512, 513, 1535)] == [
        16,
        16,
        32,
        256,
        512,
        1024,
        1536,
    ]
    assert [bucket_count(n) for n in (1, 2, 3, 4, 5, 7, 9, 13, 17, 33, 49)] == [
        1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 64
    ]  # fmt: skip
    lengths = [3, 20, 5, 4, 6]
    batch = default_engine(engine_helpers.tiny_lm()).layout(engine_helpers.prompts(8, lengths))
    assert batch.prefix_tokens.shape == (6, 32) and batch.is_real.tolist() == [1] * 5 + [0]


def test_finished_samples_are_never_extended():
    lm = engine_helpers.tiny_lm()
    engine = default_engine(lm)
    state = engine.start(engine.layout(engine_helpers.prompts(9, [4])), 2, 16, seed=0)
    sampling = SamplingConfig()
    state, first = engine.extend(state, max_tokens=16, token_limit=3, sampling=sampling)
    assert np.asarray(first.count)[0].tolist() == [3, 3]
    assert (np.asarray(first.finish)[0] == Finish.LENGTH).all()
    _, second = engine.extend(state, max_tokens=16, token_limit=10, sampling=sampling)
    assert np.asarray(second.count)[0].tolist() == [0, 0]


def test_bfloat16_engine_tracks_float32():
    """The GPU configuration (bfloat16 weights and caches) on the same weights."""
    full = engine_helpers.tiny_lm()
    half = engine_helpers.tiny_lm(dtype="bfloat16")  # the same draws, rounded
    assert half.params["layers"][0]["attn"]["qkv_proj"].dtype == jnp.bfloat16
    prompt = engine_helpers.prompts(10, [9])[0]
    greedy = ttc_jax.generate(full, [prompt], max_new_tokens=8, temperature=0)[0][0]
    half_greedy = ttc_jax.generate(half, [prompt], max_new_tokens=8, temperature=0)[0][0]
    assert half_greedy.token_ids[:4] == greedy.token_ids[:4]
    assert abs(half_greedy.logprob - greedy.logprob) < 0.5


def _token_ids(results):
    return [[s.token_ids for s in samples] for samples in results]


@pytest.mark.parametrize("n", [3, 5])  # 5 samples run as 6: padding samples change nothing
def test_a_prompts_samples_do_not_depend_on_its_place_or_company_in_the_batch(n):
    lm = engine_helpers.tiny_lm(scale_logits=False)
    prompts = engine_helpers.prompts(11, [5, 30, 8, 3, 17])
    kwargs = dict(n=n, max_new_tokens=6, temperature=1.0, seed=7)
    alone = [_token_ids(ttc_jax.generate(lm, [p], **kwargs))[0] for p in prompts]
    assert len({tuple(map(tuple, a)) for a in alone}) == len(prompts)  # prompts differ
    orders = [[0, 1], [1, 0], [4, 2, 0, 3, 1], [3, 3, 1], [2, 4, 1, 0, 3, 2, 4]]
    for order in orders:
        together = _token_ids(ttc_jax.generate(lm, [prompts[i] for i in order], **kwargs))
        for position, i in enumerate(order):
            assert together[position] == alone[i], (order, position)


def test_one_stop_string_is_one_stop_string():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    prompts = engine_helpers.prompts(12, [4, 6])
    kwargs = dict(n=8, max_new_tokens=30, seed=2)
    as_string = ttc_jax.generate(lm, prompts, stop="\nA", **kwargs)
    as_list = ttc_jax.generate(lm, prompts, stop=["\nA"], **kwargs)
    assert _token_ids(as_string) == _token_ids(as_list)
    texts = [s.text for samples in as_string for s in samples]
    stopped = [s for samples in as_string for s in samples if s.finish_reason == "stop"]
    assert stopped and all(s.text.endswith("\nA") for s in stopped)
    assert any("\n" in t and "\nA" not in t for t in texts)  # a lone "\n" did not stop it


def test_a_prompt_longer_than_the_context_is_refused_before_any_compute():
    lm = engine_helpers.tiny_lm(max_position_embeddings=64)
    engine = default_engine(lm)
    with pytest.raises(ValueError, match="60 tokens plus 10 new tokens exceeds the model's"):
        ttc_jax.generate(lm, engine_helpers.prompts(13, [60]), max_new_tokens=10)
    assert engine._start._cache_size() == 0 and engine._extend._cache_size() == 0
    # Up to the context is fine: the bucketed suffix is cut to what fits.
    [[sample]] = ttc_jax.generate(lm, engine_helpers.prompts(13, [60]), max_new_tokens=4)
    assert len(sample.token_ids) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(temperature=-0.5), "temperature must be a finite number"),
        (dict(n=2.5), "n must be an integer >= 1, got 2.5"),
        (dict(n=0), "n must be an integer >= 1"),
        (dict(n=True), "n must be an integer >= 1"),
        (dict(max_new_tokens=3.5), "max_new_tokens must be an integer >= 1, got 3.5"),
        (dict(top_k=65), "top_k=65 exceeds the vocabulary"),
        (dict(top_k=1.5), "top_k must be an integer"),
        (dict(seed=-1), "seed must be an integer in"),
        (dict(seed=1.5), "seed must be an integer in"),
        (dict(stop=["\n", ""]), "stop strings must be non-empty strings"),
        (dict(stop=[None]), "stop strings must be non-empty strings"),
    ],
)
def test_bad_sampling_arguments_name_the_argument(kwargs, message):
    lm = engine_helpers.tiny_lm()
    with pytest.raises(ValueError, match=message):
        ttc_jax.generate(lm, [[7, 8]], **kwargs)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ([None], "prompt 0 is NoneType: expected a string or a list of token ids"),
        ([[7], [7, None]], "prompt 1 is list: expected a string or a list of token ids"),
        ([[7], 3], "prompt 1 is int"),
        (None, "prompts must be a non-empty list"),
        ([], "prompts must be a non-empty list"),
    ],
)
def test_bad_prompts_are_named(prompts, message):
    with pytest.raises(ValueError, match=message):
        ttc_jax.generate(engine_helpers.tiny_lm(), prompts)


def test_a_sample_ended_by_eos_says_so_in_later_calls_and_its_step_text_has_no_eos():
    lm = engine_helpers.tiny_lm()
    prompt = engine_helpers.prompts(2, [6])[0]
    greedy = ttc_jax.generate(lm, [prompt], max_new_tokens=8, temperature=0)[0][0]
    eos = greedy.token_ids[3]
    lm_eos = engine_helpers.tiny_lm(eos_token_ids=(eos,))
    engine = default_engine(lm_eos)
    state = engine.start(engine.layout([prompt]), 2, 16, seed=0)
    sampling = SamplingConfig(temperature=0)
    state, first = engine.extend(state, max_tokens=16, token_limit=16, sampling=sampling)
    assert np.asarray(first.finish)[0].tolist() == [Finish.EOS] * 2
    [[ids, _]] = engine.new_tokens(first, 1, 2)
    assert ids[-1] == eos
    [[text, _]] = engine.step_texts(first, 1, 2)
    assert text == lm.tokenizer.decode(ids[:-1])
    state, second = engine.extend(state, max_tokens=16, token_limit=16, sampling=sampling)
    assert np.asarray(second.finish)[0].tolist() == [Finish.EOS] * 2
    assert np.asarray(second.count)[0].tolist() == [0, 0]
    assert np.asarray(state.finished)[0].tolist() == [True, True]


def test_reusing_a_consumed_state_is_a_clear_error():
    lm = engine_helpers.tiny_lm()
    engine = default_engine(lm)
    state = engine.start(engine.layout(engine_helpers.prompts(3, [5])), 2, 16, seed=0)
    sampling = SamplingConfig()
    engine.extend(state, max_tokens=4, token_limit=4, sampling=sampling)
    with pytest.raises(ValueError, match="cannot extend: this DecodeState was consumed"):
        engine.extend(state, max_tokens=4, token_limit=4, sampling=sampling)
    with pytest.raises(ValueError, match="cannot reorder: this DecodeState was consumed"):
        engine.reorder(state, np.zeros((1, 2), int))


def test_new_sampling_values_stop_sets_and_counts_in_a_bucket_compile_nothing():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    engine = default_engine(lm)
    prompts = engine_helpers.prompts(14, [5, 9])

    def run(**kwargs):
        ttc_jax.generate(lm, prompts, max_new_tokens=8, **{"n": 5, "stop": "\n", **kwargs})
        return engine._start._cache_size(), engine._extend._cache_size()

    baseline = run(temperature=0.7)
    for kwargs in (
        dict(temperature=0.9),
        dict(temperature=0),
        dict(n=6),
        dict(stop=["AB", "\nC"]),
        dict(stop="The answer is"),
    ):
        assert run(**kwargs) == baseline, kwargs
    filtered = run(top_p=0.9)
    # Filtering is one more program per lane count the run decodes with...
    assert filtered[1] == 2 * baseline[1]
    for kwargs in (dict(top_p=0.5), dict(top_k=5), dict(top_k=50, top_p=0.95)):
        assert run(**kwargs) == filtered, kwargs  # ...whatever its values
