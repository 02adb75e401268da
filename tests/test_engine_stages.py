"""The suffix grows in stages without changing any sample, and the compiled decode step has
the structure the GPU goals rely on: no inner loops, no per-step copies of the KV cache."""

import re

import jax
import numpy as np
import pytest

from tests import engine_helpers
from ttc_jax.engine import Engine, Finish, SamplingConfig, default_engine


def sample(engine, prompts, num_samples, max_tokens, capacity, seed=3, stop=(), allocate=None):
    state = engine.start(engine.layout(prompts), num_samples, capacity, seed, allocate=allocate)
    state, out = engine.extend(
        state,
        max_tokens=max_tokens,
        token_limit=max_tokens,
        sampling=SamplingConfig(temperature=1.0),
        stop=stop,
    )
    return state, out


def test_staged_suffix_gives_the_samples_of_one_allocation():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    prompts = engine_helpers.prompts(11, [4, 9])
    one_stage = Engine(lm, suffix_stage=64)
    staged = Engine(lm, suffix_stage=4)  # grows 4 -> 8 -> 12 -> 16 -> 24 -> 32
    state, out = sample(staged, prompts, 3, 30, 32)
    _, reference = sample(one_stage, prompts, 3, 30, 32)
    assert state.cache.capacity == 32
    tokens = staged.new_tokens(out, len(prompts))
    assert tokens == one_stage.new_tokens(reference, len(prompts))
    np.testing.assert_allclose(np.asarray(out.logprob), np.asarray(reference.logprob), atol=1e-4)
    assert int(out.steps) == 30
    for b, prompt in enumerate(prompts):
        for j in range(3):
            assert len(tokens[b][j]) == 30
            expected = engine_helpers.full_logprobs(lm, prompt, tokens[b][j])
            np.testing.assert_allclose(float(out.logprob[b, j]), expected.sum(), atol=1e-3)


def test_a_suffix_allocated_up_front_never_grows_and_gives_the_same_samples():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    prompts = engine_helpers.prompts(11, [4, 9])
    engine = Engine(lm, suffix_stage=4)
    state = engine.start(engine.layout(prompts), 3, 32, seed=3, allocate=32)
    assert state.cache.capacity == 32  # not the first stage's 4
    grown, out = sample(engine, prompts, 3, 30, 32, allocate=32)
    _, staged = sample(engine, prompts, 3, 30, 32)
    assert grown.cache.capacity == 32
    tokens = engine.new_tokens(out, len(prompts))
    assert tokens == engine.new_tokens(staged, len(prompts))
    np.testing.assert_allclose(np.asarray(out.logprob), np.asarray(staged.logprob), atol=1e-4)
    # A count between stages rounds up to the next stage.
    assert engine.start(engine.layout(prompts), 3, 32, seed=3, allocate=9).cache.capacity == 12


@pytest.mark.parametrize("allocate", [0, 33, 2.5])
def test_start_rejects_a_bad_allocation(allocate):
    engine = Engine(engine_helpers.tiny_lm(), suffix_stage=4)
    with pytest.raises(ValueError, match="allocate must be an integer in \\[1, capacity=32\\]"):
        engine.start(engine.layout(engine_helpers.prompts(11, [4])), 2, 32, 0, allocate=allocate)


def test_samples_stop_at_the_slot_limit_not_at_a_stage():
    lm = engine_helpers.tiny_lm()
    engine = Engine(lm, suffix_stage=4)
    state, out = sample(engine, engine_helpers.prompts(12, [5]), 2, 40, 12)
    # 12 slots: the cache grew 4 -> 8 -> 12 and the samples ended there, not at 4 or 8.
    assert state.cache.capacity == 12
    assert np.asarray(out.count)[0].tolist() == [12, 12]
    assert (np.asarray(out.finish)[0] == Finish.LENGTH).all()


def test_stepwise_extension_across_stages_with_reorder():
    lm = engine_helpers.tiny_lm(scale_logits=False)
    engine = Engine(lm, suffix_stage=4)
    prompts = engine_helpers.prompts(13, [6, 10])
    sampling = SamplingConfig(temperature=1.0)
    state = engine.start(engine.layout(prompts), 4, 64, seed=5)
    histories = [[[] for _ in range(4)] for _ in prompts]
    for round_index in range(3):
        state, out = engine.extend(
            state, max_tokens=8, token_limit=64, sampling=sampling, stop=("\n",)
        )
        new = engine.new_tokens(out, len(prompts))
        for b in range(len(prompts)):
            for j in range(4):
                histories[b][j] = histories[b][j] + new[b][j]
        if round_index < 2:
            indices = np.array([[1, 0, 0, 3], [2, 2, 1, 0]])
            state = engine.reorder(state, indices)
            histories = [[histories[b][i] for i in row] for b, row in enumerate(indices)]
    assert state.cache.capacity > 4  # the rounds crossed stages
    for b, prompt in enumerate(prompts):
        for j in range(4):
            expected = engine_helpers.full_logprobs(lm, prompt, histories[b][j])
            np.testing.assert_allclose(float(state.logprob[b, j]), expected.sum(), atol=1e-3)


def test_engine_rejects_a_bad_stage():
    with pytest.raises(ValueError, match="suffix_stage"):
        Engine(engine_helpers.tiny_lm(), suffix_stage=0)


# -- structure of the compiled decode step ------------------------------------------------------

# Big enough that a copy of a cache array stands out from the copies of small per-step values.
SHAPE = dict(num_layers=2, hidden_size=128, num_heads=8, num_kv_heads=2, head_dim=32)


def extend_program(lm, num_prompts, num_samples, capacity, max_tokens=16):
    engine = default_engine(lm)
    prompts = engine_helpers.prompts(14, [7] * num_prompts)
    state = engine.start(engine.layout(prompts), num_samples, capacity, seed=0)
    args, static = engine.extend_arguments(
        state, max_tokens=max_tokens, token_limit=max_tokens, sampling=SamplingConfig()
    )
    with jax.set_mesh(lm.mesh):
        traced = engine._extend.trace(*args, **static)
        hlo = traced.lower().compile().as_text()
    return state, traced.jaxpr, hlo


def loop_primitives(jaxpr) -> list[str]:
    """Names of the control-flow primitives anywhere in a jaxpr (sub-jaxprs included)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("while", "cond", "scan"):
            found.append(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    found += loop_primitives(getattr(inner, "jaxpr", inner))
    return found


def copies_in_loops(hlo: str, min_elements: int) -> list[str]:
    """Copy and transpose instructions of at least ``min_elements`` elements that run inside a
    while loop of compiled HLO text (fused computations included)."""
    computations, name = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%(\S+) .*\{$", line)
        if header:
            name = header.group(1)
            computations[name] = []
        elif name:
            computations[name].append(line)
    pending = re.findall(r"body=%([\w.\-]+)", hlo)
    reached = set()
    while pending:
        current = pending.pop()
        if current in reached or current not in computations:
            continue
        reached.add(current)
        for line in computations[current]:
            pending += re.findall(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", line)
    found = []
    for current in reached:
        for line in computations[current]:
            op = re.search(r"= \w+\[([\d,]+)\]\{[\d,]*\} (?:copy|transpose)\(", line)
            if op and np.prod([int(d) for d in op.group(1).split(",")]) >= min_elements:
                found.append(line.strip())
    return found


@pytest.mark.parametrize("num_prompts", [1, 2])
def test_decode_step_has_no_inner_loop_and_never_copies_the_cache(num_prompts):
    lm = engine_helpers.tiny_lm(**SHAPE)
    state, jaxpr, hlo = extend_program(lm, num_prompts, num_samples=8, capacity=64)
    # One loop: the decode loop. A loop inside the step with a data-dependent trip count
    # (as a chunked read of the written suffix would be) costs a host round trip per
    # iteration on a GPU.
    assert loop_primitives(jaxpr.jaxpr) == ["while"]
    # The cache is updated in place and read where it lies, and no weight is re-laid out:
    # nothing as large as one layer's suffix keys is copied or transposed per step. (One
    # prompt is the case that once copied the cache: with a unit batch axis in the attention
    # product, XLA duplicated the in-place update into the product's input.)
    layer_suffix = state.cache.suffix_k[0].size
    assert layer_suffix >= 8 * 2 * 32 * 64
    assert copies_in_loops(hlo, layer_suffix) == []
