"""The Colab notebooks: well-formed, and run from top to bottom at toy sizes with papermill,
which sets the cell tagged "parameters" the way a user would."""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [path.name for path in NOTEBOOKS] == ["embedded_world.ipynb", "real_models.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebooks_are_saved_clean_with_one_parameters_cell(path):
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    # Saved without outputs, so a diff shows only what changed in the code.
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1


def test_the_embedded_world_notebook_runs_end_to_end(tmp_path):
    study_dir = tmp_path / "study"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(ROOT / "colab" / "embedded_world.ipynb"),
        str(executed),
        parameters=dict(
            REPO_DIR=str(ROOT),
            QUESTIONS_PER_LEVEL=1,
            BUDGET=4,
            STUDY_QUESTIONS_PER_LEVEL=1,
            STUDY_BUDGETS=[1, 2],
            STUDY_STRATEGIES=["majority", "best_of_n_weighted"],
            DIFFICULTY_SAMPLES=4,
            STUDY_DIR=str(study_dir),
        ),
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    cells = json.loads(executed.read_text())["cells"]
    printed = "".join(
        "".join(output.get("text", ""))
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell["outputs"]
    )
    assert "accuracy by level at budget 4" in printed
    for strategy in ("majority", "best_of_n", "beam", "revisions"):
        assert f"\n{strategy:>10} " in printed, strategy
    assert "voted answer" in printed and "FLOPs" in printed
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["budgets"] == [1, 2]
    assert set(summary["accuracy"]) == {"majority", "best_of_n_weighted", "revisions_s1",
                                        "revisions_s2"}  # fmt: skip
    assert (study_dir / "compute_optimal.png").is_file()


def test_the_real_models_notebook_runs_end_to_end(tmp_path):
    """colab/real_models.ipynb on tiny random Hugging Face checkpoints (a policy with a chat
    template and a qwen_math_prm PRM) and 2 MATH-500 questions: the study of
    configs/math500_hf.py, its report and figures shown, then `ttc_jax.solve` on a new
    question with the fitted table."""
    from tests import prm_checkpoints, search_helpers
    from tests.test_study_configs import CHAT_TEMPLATE
    from ttc_jax.models.export import save_causal_lm

    policy = search_helpers.tiny_policy()
    save_causal_lm(tmp_path / "policy", policy.config, policy.params)
    policy.tokenizer.chat_template = CHAT_TEMPLATE
    policy.tokenizer.save_pretrained(tmp_path / "policy")
    prm_checkpoints.write_checkpoint("qwen_math_prm", tmp_path / "prm")
    study_dir = tmp_path / "study"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(ROOT / "colab" / "real_models.ipynb"),
        str(executed),
        parameters=dict(
            REPO_DIR=str(ROOT),
            POLICY=str(tmp_path / "policy"),
            PRM=str(tmp_path / "prm"),
            DTYPE="float32",
            MESH=[1, 1],
            QUESTIONS=2,
            BUDGETS=[1, 2],
            STRATEGIES=["majority", "best_of_n_weighted"],
            DIFFICULTY_SAMPLES=2,
            CHARGED_SAMPLES=1,
            MAX_NEW_TOKENS=16,
            MAX_STEP_TOKENS=8,
            STUDY_DIR=str(study_dir),
            NEW_QUESTION="What is $1+1$?",
            SOLVE_BUDGET=2,
        ),
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    cells = json.loads(executed.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    outputs = [output for cell in code for output in cell["outputs"]]
    printed = "".join("".join(output.get("text", "")) for output in outputs)
    assert "mesh {'data': 1, 'model': 1}" in printed and "PRM qwen_math_prm" in printed
    assert "What is $1+1$?\ndifficulty bin " in printed and "FLOPs" in printed
    # The report as Markdown and every figure as an image, inline.
    shown = [output.get("data", {}) for output in outputs]
    markdown = ["".join(data.get("text/markdown", "")) for data in shown]
    assert any(text.startswith("# Compute-optimal") for text in markdown)
    figures = sorted(path.name for path in study_dir.glob("*.png"))
    assert "compute_optimal.png" in figures
    assert sum("image/png" in data for data in shown) == len(figures)
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["budgets"] == [1, 2]
    assert set(summary["accuracy"]) == {"majority", "best_of_n_weighted"}
