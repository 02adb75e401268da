"""The shipped study configs end to end: configs/math500_hf.py on tiny random Hugging Face
checkpoints and on SmolLM2, and configs/palm2_math.py's PaLM 2 table driving ttc-solve."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ttc_jax
from tests import prm_checkpoints, search_helpers
from tests.study_helpers import load_config
from ttc_jax.models.export import save_causal_lm
from ttc_jax.study import run_study

REPO = Path(__file__).resolve().parents[1]
# The smallest chat template: enough for the chat prompt style on a tokenizer without one.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny random policy (with a chat template) and random ttc_value / qwen_math_prm PRMs,
    saved as Hugging Face folders."""
    root = tmp_path_factory.mktemp("checkpoints")
    policy = search_helpers.tiny_policy()
    save_causal_lm(root / "policy", policy.config, policy.params)
    policy.tokenizer.chat_template = CHAT_TEMPLATE
    policy.tokenizer.save_pretrained(root / "policy")
    for kind in ("ttc_value", "qwen_math_prm"):
        prm_checkpoints.write_checkpoint(kind, root / kind)
    return {"policy": root / "policy", **{k: root / k for k in ("ttc_value", "qwen_math_prm")}}


def small_math500_study(config, workdir: Path, policy: Path, prm: Path, questions: int):
    config.workdir = str(workdir)
    config.data.limit = questions
    config.models.policy = str(policy)
    config.models.prm = str(prm)
    config.models.dtype = "float32"
    config.budgets = (1, 2)
    config.strategies = ("majority", "best_of_n_weighted", "beam_msqrt", "lookahead_k1")
    config.difficulty.samples = 2
    config.difficulty.charged_samples = 1
    config.search.max_new_tokens = 16
    config.search.max_step_tokens = 8
    config.search.max_rounds = 3
    return config


def check_summary(summary: dict, workdir: Path, questions: int) -> None:
    assert summary["budgets"] == [1, 2]
    for label in ("majority", "best_of_n_weighted", "beam_msqrt"):
        for budget in ("1", "2"):
            assert 0 <= summary["accuracy"][label][budget] <= 1
    assert set(summary["compute_optimal"]) >= {"oracle", "predicted"}
    rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert len({r["question_id"] for r in rows}) == questions
    assert (workdir / "report.md").read_text().startswith("# Compute-optimal")
    table = json.loads((workdir / "strategy_table.json").read_text())
    assert set(table["table"]) == {"1", "2", "3", "4", "5"}


def test_math500_hf_config_runs_on_tiny_hf_checkpoints(checkpoints, tmp_path):
    config = load_config("math500_hf")
    assert config.search.prompt.style == "chat" and config.models.prm_kind == "qwen_math_prm"
    small_math500_study(
        config, tmp_path, checkpoints["policy"], checkpoints["qwen_math_prm"], questions=3
    )
    summary = run_study(config, progress=False)
    check_summary(summary, tmp_path, 3)


@pytest.mark.slow
def test_math500_hf_config_runs_on_smollm2(checkpoints, tmp_path, smollm2_path):
    config = load_config("math500_hf")
    small_math500_study(config, tmp_path, smollm2_path, checkpoints["qwen_math_prm"], questions=2)
    summary = run_study(config, progress=False)
    check_summary(summary, tmp_path, 2)


def test_palm2_table_drives_ttc_solve(checkpoints):
    config = load_config("palm2_math")
    table = config.strategy_table.to_dict()
    question = search_helpers.QUESTIONS[0]
    command = [
        sys.executable,
        "-m",
        "ttc_jax.cli.solve",
        f"--config={REPO / 'configs' / 'palm2_math.py'}",
        f"--config.models.policy={checkpoints['policy']}",
        f"--config.models.prm={checkpoints['ttc_value']}",
        "--config.models.prm_kind=ttc_value",
        "--config.models.dtype=float32",
        # No solved examples ship for the 4-shot prompt; the table is what is tested.
        "--config.search.prompt.num_shots=0",
        "--config.search.max_new_tokens=16",
        "--config.search.max_step_tokens=8",
        "--config.search.max_rounds=3",
        f"--question={question}",
        "--budget=5",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # Budget 5 falls back to the table's largest budget that fits (4), and the strategy is
    # the PaLM 2 table's for the question's predicted bin.
    assert result["budget"] == 4
    assert result["strategy"] == table["table"][str(result["difficulty_bin"])]["4"]
    expected_bin = 1 + sum(result["difficulty_score"] < e for e in table["difficulty"]["edges"])
    assert result["difficulty_bin"] == expected_bin
    # The estimate's samples are charged beside the strategy's generations.
    assert result["accounting"]["generations"] == table["difficulty"]["samples"] + 4


def test_solve_runs_the_tables_strategy_for_each_bin():
    policy = search_helpers.tiny_policy()
    prm = ttc_jax.PRM.random(
        policy.config.replace(hidden_size=16, intermediate_size=16, num_heads=2, num_kv_heads=1),
        "ttc_value",
        policy.tokenizer,
        seed=3,
    )
    search = {"max_new_tokens": 16, "max_step_tokens": 8, "max_rounds": 3}
    per_bin = {str(b): {"1": "majority", "4": "beam_msqrt" if b == 1 else "beam_m4"} for b in
               range(1, 6)}  # fmt: skip
    # Scores lie in (0, 1): edges above every score give bin 5, below every score bin 1.
    for edges, expected_bin in (([2.0] * 4, 5), ([-1.0] * 4, 1)):
        table = {
            "difficulty": {"samples": 2, "edges": edges},
            "budgets": [1, 4],
            "table": per_bin,
            "search": search,
        }
        result = ttc_jax.solve(search_helpers.QUESTIONS[1], 4, policy, prm, table, seed=0)
        assert result.difficulty_bin == expected_bin
        assert result.strategy == per_bin[str(expected_bin)]["4"]
        assert result.accounting.generations == 2 + 4
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        ttc_jax.solve("q", 0, policy, prm, table)
