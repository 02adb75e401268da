"""Searches two short MATH-500 questions alone, then beside the longest one, on SmolLM2 with a
small random PRM, and prints each short question's candidates both ways as JSON.

Run in its own process (`measure`) by tests/test_search_smollm2.py and
tests/test_pool_smollm2.py, on XLA's default CPU client (one device): the tests' other
processes force 8 host devices, and with 4 or 8 of them Eigen's products on a device changed
with their row count again, options or not (docs/engine.md).

    python -m tests.batch_invariance best_of_n beam dvts lookahead admit pool

``admit`` compares a question's samples decoded alone and admitted into a running batch,
``pool`` beam search's candidates searched alone and in a pool of two questions at a time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import ttc_jax
from ttc_jax.math import load_math500
from ttc_jax.search import run, strategy_config
from ttc_jax.search.prompting import build_prompter

PRM_SHAPE = ttc_jax.ModelConfig(
    vocab_size=49152,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    intermediate_size=64,
    max_position_embeddings=4096,
)


def search_config(name: str):
    config = strategy_config(name)
    config.max_new_tokens = 16
    if name in ("beam", "dvts", "lookahead"):
        config.beam_width = 4
        config.max_rounds = 3
        config.max_step_tokens = 8
    return config


def short_and_long_problems(policy, config):
    """The two problems with the shortest prompts (64 slots) and the one with the longest
    (over 512 tokens: its batch pads every prompt to 1,024 slots)."""
    problems = load_math500()
    prompter = build_prompter(config.prompt, config.step_delimiter, policy.tokenizer)
    length = {p.id: len(policy.tokenizer.encode(prompter.text(p))) for p in problems}
    shortest = sorted(problems, key=lambda p: length[p.id])[:2]
    longest = max(problems, key=lambda p: length[p.id])
    assert max(length[p.id] for p in shortest) <= 64 < 512 < length[longest.id]
    return shortest, longest


def candidates(result) -> list[list[str]]:
    # repr: bit-exact floats, and a candidate without steps scores NaN, where NaN != NaN.
    return [[c.text, repr(c.step_scores), repr(c.score)] for c in result.candidates]


def compare(name: str, policy, prm) -> dict[str, list]:
    """``name``'s candidates of the two short questions, searched alone and beside the long
    one (their rows then share 48 lanes, padded to 64, instead of 16)."""
    config = search_config(name)
    (first, second), long = short_and_long_problems(policy, config)
    alone = [
        candidates(run(config, policy, prm, [p], budget=16, seed=5)[0]) for p in (first, second)
    ]
    beside = run(config, policy, prm, [second, long, first], budget=16, seed=5)
    return {"alone": alone, "beside": [candidates(beside[2]), candidates(beside[0])]}


def pooled(policy, prm) -> dict[str, list]:
    """Beam search's candidates of the two short questions, searched alone, and in a pool
    with room for two questions at a time (32 rows at budget 16): the first short question
    waits, then takes the rows of whichever of the other two ends first (`tree_search`)."""
    config = search_config("beam")
    (first, second), long = short_and_long_problems(policy, config)
    alone = [
        candidates(run(config, policy, prm, [p], budget=16, seed=5)[0]) for p in (first, second)
    ]
    pool = run(config, policy, prm, [second, long, first], budget=16, seed=5, max_rows=32)
    return {"alone": alone, "beside": [candidates(pool[2]), candidates(pool[0])]}


def admission(policy) -> dict[str, list]:
    """The first short question's samples (tokens and bit-exact log-probabilities), decoded
    alone, and admitted into the row of the second short question once that one has ended,
    beside the long one mid-way (`Engine.admit`: its prefix padded to 1,024 slots)."""
    from ttc_jax.engine import Engine, SamplingConfig

    config = search_config("best_of_n")
    (first, second), long = short_and_long_problems(policy, config)
    prompter = build_prompter(config.prompt, config.step_delimiter, policy.tokenizer)
    first, second, long = (policy.tokenizer.encode(prompter.text(p)) for p in (first, second, long))
    sampling = SamplingConfig(temperature=1.0)

    def decode(engine, state, tokens):
        state, out = engine.extend(state, max_tokens=tokens, token_limit=64, sampling=sampling)
        samples = zip(engine.new_tokens(out, 1)[0], out.logprob[0].tolist(), strict=False)
        return state, [[ids, repr(logprob)] for ids, logprob in samples]

    engine = Engine(policy)
    _, alone = decode(engine, engine.start(engine.layout([first]), 4, 64, seed=5), 16)
    state = engine.start(engine.layout([second, long]), 4, 64, seed=5)
    state, _ = decode(engine, state, 8)
    state = engine.freeze(state, [[True] * 4, [False] * 4])  # the second question ends
    width = state.cache.prefix_valid.shape[1]
    state = engine.admit(state, [0], engine.layout([first], width=width), 4, seed=5)
    _, beside = decode(engine, state, 16)
    return {"alone": alone, "beside": beside}


def main(names: list[str]) -> None:
    policy = ttc_jax.load_lm(ttc_jax.smollm2_path())
    prm = ttc_jax.PRM.random(PRM_SHAPE, "ttc_value", policy.tokenizer, seed=0)
    print(
        json.dumps(
            {
                name: admission(policy)
                if name == "admit"
                else pooled(policy, prm)
                if name == "pool"
                else compare(name, policy, prm)
                for name in names
            }
        )
    )


def measure(names) -> dict[str, dict]:
    """Runs ``names`` (strategies, ``admit``, ``pool``) in a process of its own on XLA's
    default CPU client (this process's environment without the tests' forced host
    devices) and returns each one's ``alone`` and ``beside`` results."""
    environment = dict(os.environ)
    flags = environment.get("XLA_FLAGS", "").split()
    environment["XLA_FLAGS"] = " ".join(
        f for f in flags if not f.startswith("--xla_force_host_platform_device_count")
    )
    completed = subprocess.run(
        [sys.executable, "-m", "tests.batch_invariance", *names],
        cwd=Path(__file__).resolve().parents[1],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(sys.argv[1:])
