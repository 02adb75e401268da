"""The shipped checkpoints of the embedded world: they load like any checkpoint, equal
transformers' PyTorch models, carry their training records, and search runs on them."""

import json

import numpy as np
import pytest
import torch
import transformers

import ttc_jax
from tests import prm_checkpoints
from ttc_jax import embedded
from ttc_jax.search import run

LANGUAGE_MODELS = ("policy", "policy_14x", "revision")
PRMS = ("prm", "revision_verifier")


def test_checkpoint_path_names_the_shipped_folders():
    for name in embedded.CHECKPOINT_NAMES:
        assert (embedded.checkpoint_path(name) / "model.safetensors").exists()
    with pytest.raises(ValueError, match="unknown checkpoint"):
        embedded.checkpoint_path("policy_7x")


def prompt_ids(tokenizer) -> list[int]:
    [problem] = embedded.make_problems(1, 3, seed=0)
    return tokenizer(embedded.PROMPT.text(problem) + problem.solution)["input_ids"]


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_language_models_match_transformers(name):
    folder = embedded.checkpoint_path(name)
    lm = ttc_jax.load_lm(folder)
    tokens = np.array([prompt_ids(lm.tokenizer)])
    reference = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(lm.logits(tokens)), expected, atol=1e-4)


def torch_verifier(name: str) -> prm_checkpoints.Reference:
    """The shipped verifier as transformers' decoder with its head in torch, scoring as
    tests/prm_checkpoints' references do."""
    folder = embedded.checkpoint_path(name)
    kind = embedded.VERIFIER_KINDS[name]
    config = transformers.AutoConfig.from_pretrained(folder)
    if kind == "ttc_likelihood":
        head = prm_checkpoints.LikelihoodValue(config.hidden_size)
    else:
        head = torch.nn.Linear(config.hidden_size, 1)
    model = prm_checkpoints.HeadedBackbone(config, {"value_head": head})
    weights = transformers.modeling_utils.load_state_dict(str(folder / "model.safetensors"))
    model.load_state_dict(weights)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return prm_checkpoints.Reference(kind, model.eval(), tokenizer)


@pytest.mark.parametrize("name", PRMS)
def test_prms_match_transformers_with_their_heads_in_torch(name):
    prm = ttc_jax.load_prm(embedded.checkpoint_path(name), embedded.VERIFIER_KINDS[name])
    [problem] = embedded.make_problems(1, 2, seed=0)
    right = problem.solution.split("\n")
    # One digit off in the first step's result: a candidate the PRM should doubt.
    wrong = [right[0][:-1] + str((int(right[0][-1]) + 1) % 10), *right[1:]]
    ours = prm.score(problem.problem, [right, wrong])
    expected = torch_verifier(name).score(problem.problem, [right, wrong])
    for ours_row, expected_row in zip(ours, expected, strict=True):
        np.testing.assert_allclose(ours_row, expected_row, atol=1e-4)


def test_training_records_and_sizes():
    records = {
        name: json.loads((embedded.checkpoint_path(name) / "training.json").read_text())
        for name in embedded.CHECKPOINT_NAMES
    }
    for record in records.values():
        assert record["command"].startswith("ttc-train ") and record["config"]["mode"] == "full"
        assert record["seed"] == 0 and record["machine"]
    small, large = records["policy"], records["policy_14x"]
    assert small["training_tokens"] == large["training_tokens"] > 0
    assert 12 <= large["parameters"] / small["parameters"] <= 16
    assert small["parameters"] < 1_000_000
    shipped = sum(
        f.stat().st_size
        for name in embedded.CHECKPOINT_NAMES
        for f in embedded.checkpoint_path(name).iterdir()
    )
    assert shipped < 50 * 2**20


def test_search_runs_on_the_shipped_models():
    policy = ttc_jax.load_lm(embedded.checkpoint_path("policy"))
    prm = ttc_jax.load_prm(embedded.checkpoint_path("prm"), embedded.VERIFIER_KINDS["prm"])
    problems = embedded.make_problems(2, 1, seed=0)
    for name in ("best_of_n", "beam"):
        results = run(embedded.search_config(name), policy, prm, problems, budget=4, seed=0)
        assert len(results) == 2 and all(r.accounting.generations == 4 for r in results)
        assert all(len(r.candidates) == 4 for r in results)
