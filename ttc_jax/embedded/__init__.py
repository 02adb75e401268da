"""The embedded world: a synthetic MATH-format task and small models trained on it here.

    from ttc_jax import embedded, load_lm, load_prm

    problems = embedded.make_problems(64, level=3, seed=0)  # fresh test questions
    policy = load_lm(embedded.checkpoint_path("policy"))
    prm = load_prm(embedded.checkpoint_path("prm"), embedded.VERIFIER_KINDS["prm"])
    prompt = embedded.PROMPT.text(problems[0])  # "Problem:\\n...\\n\\nSolution:\\n"

Checkpoints: "policy", "policy_14x" (about 14x the parameters, same data), "prm" (a
``ttc_likelihood`` PRM on the 14x policy), "revision_verifier" (a ``ttc_value`` PRM) and
"revision" (the revision model). Search runs on them unchanged with this world's settings::

    results = ttc_jax.search.run(embedded.search_config("beam"), policy, prm, problems, 16)

See docs/embedded.md for the task, the training pipeline (``ttc-train``) and measured figures.
"""

from __future__ import annotations

from pathlib import Path

from ttc_jax.embedded.task import (
    LEVELS,
    MAX_NEW_TOKENS,
    PROMPT,
    PROMPT_CONFIG,
    SAMPLING_TEMPERATURE,
    make_problems,
)

CHECKPOINT_NAMES = ("policy", "policy_14x", "prm", "revision", "revision_verifier")
# The PRM kind (`ttc_jax.load_prm`) of each shipped verifier.
VERIFIER_KINDS = {"prm": "ttc_likelihood", "revision_verifier": "ttc_value"}


def checkpoint_path(name: str) -> Path:
    """The shipped Hugging Face folder of checkpoint ``name`` (one of `CHECKPOINT_NAMES`)."""
    from ttc_jax.embedded.pipeline import package_checkpoints_dir

    if name not in CHECKPOINT_NAMES:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {CHECKPOINT_NAMES}")
    path = package_checkpoints_dir() / name
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} holds no checkpoint; this installation ships none (train them with "
            "`ttc-train --config configs/embedded.py`)"
        )
    return path


# Longest step a search extends at once: a solution line is at most about 20 tokens.
MAX_STEP_TOKENS = 32


def search_config(name: str):
    """`ttc_jax.search.strategy_config(name)` set for this world (`set_search_settings`)."""
    from ttc_jax.search import strategy_config

    config = strategy_config(name)
    set_search_settings(config)
    return config


def set_search_settings(config, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
    """Sets a strategy's (or the study's ``search``) config to this world: its prompt (no
    examples, one step per line, the revision layout its models were trained on), step
    delimiter, sampling temperature and token budgets."""
    config.temperature = SAMPLING_TEMPERATURE
    config.max_new_tokens = max_new_tokens
    config.step_delimiter = PROMPT_CONFIG.step_delimiter
    config.prompt.style = "plain"
    config.prompt.num_shots = PROMPT_CONFIG.num_shots
    config.prompt.problem_header = PROMPT_CONFIG.problem_header
    config.prompt.solution_header = PROMPT_CONFIG.solution_header
    config.prompt.attempts_first = PROMPT_CONFIG.attempts_first
    if "max_step_tokens" in config:
        config.max_step_tokens = MAX_STEP_TOKENS


__all__ = [
    "CHECKPOINT_NAMES",
    "LEVELS",
    "MAX_NEW_TOKENS",
    "PROMPT",
    "PROMPT_CONFIG",
    "SAMPLING_TEMPERATURE",
    "VERIFIER_KINDS",
    "checkpoint_path",
    "make_problems",
    "search_config",
    "set_search_settings",
]
