"""Tiny models and questions for studies that run in seconds, and a script entry point that
runs one (for the kill-and-resume test, which needs its own process)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ttc_jax
from tests import search_helpers
from ttc_jax.math import Problem
from ttc_jax.study import StudyModels, study_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load_config(name: str, *args):
    """``configs/<name>.py``'s ``get_config(*args)`` (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


PROBLEMS = [
    Problem(id=f"p{i}", problem=q + " " * (i // 5), answer=str(i % 3 + 1), level=i % 5 + 1)
    for i, q in enumerate(search_helpers.QUESTIONS * 2)
]


def tiny_models() -> StudyModels:
    """Random tiny policy, PRM, 4x policy, revision model and verifier (fixed seeds)."""
    policy = search_helpers.tiny_policy()
    tokenizer = policy.tokenizer
    small = policy.config.replace(hidden_size=16, intermediate_size=16, num_heads=2, num_kv_heads=1)
    prm = ttc_jax.PRM.random(small, "ttc_value", tokenizer, seed=3)
    large = ttc_jax.LanguageModel.random(
        policy.config.replace(hidden_size=64, intermediate_size=128), seed=5, tokenizer=tokenizer
    )
    revision = search_helpers.tiny_policy(seed=7)
    verifier = ttc_jax.PRM.random(small, "ttc_value", tokenizer, seed=9)
    return StudyModels(policy, prm, large, revision, verifier)


def tiny_config(workdir: str):
    config = study_config()
    config.workdir = workdir
    config.budgets = (1, 2, 4)
    config.difficulty.samples = 8
    config.difficulty.charged_samples = 2
    config.search.max_new_tokens = 16
    config.max_rows = 16
    return config


def run_tiny_study(workdir: str) -> dict:
    from ttc_jax.study import Study

    study = Study(tiny_config(workdir), tiny_models(), PROBLEMS, progress=False)
    return study.run()


if __name__ == "__main__":
    run_tiny_study(sys.argv[1])
