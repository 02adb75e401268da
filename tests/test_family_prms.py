"""PRMs on Qwen3 and Gemma 3 backbones: value and classifier heads loaded from checkpoints
equal their PyTorch references, every kind built by `PRM.random` scores incrementally as in
full, and a search runs end to end with a Gemma 3 policy and a Qwen3-backbone value PRM."""

import numpy as np
import pytest
import torch
import transformers

import ttc_jax
from tests import checkpoints, prm_checkpoints, search_helpers
from tests.test_prm import CANDIDATES, INCREMENTAL_TOLERANCE, QUESTIONS, TOLERANCE
from ttc_jax import PRM, ModelConfig
from ttc_jax.search import run, strategy_config

# The Gemma 3 backbones' window (8 tokens) is shorter than every PRM input, so the loaded
# PRMs' scores against transformers and the step-by-step scores against full passes both
# cross the window.
WINDOW = 8
BACKBONES = {
    "qwen3": (transformers.Qwen3Config, {"head_dim": 16}),
    "gemma3": (
        transformers.Gemma3TextConfig,
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": WINDOW,
            "layer_types": ["sliding_attention", "full_attention"],
        },
    ),
}
# Checkpoint kinds with a head of their own: classifier (qwen_math_prm) and value heads.
HEADS = {
    "qwen_math_prm": lambda e: {
        "score": torch.nn.Sequential(torch.nn.Linear(e, e), torch.nn.ReLU(), torch.nn.Linear(e, 2))
    },
    "skywork": lambda e: {"v_head.summary": torch.nn.Linear(e, 1)},
    "ttc_value": lambda e: {"value_head": torch.nn.Linear(e, 1)},
}


def _write(kind, backbone, folder):
    config_cls, extra = BACKBONES[backbone]
    config = prm_checkpoints._config(config_cls, f"{backbone}-{kind}", **extra)
    model = prm_checkpoints.HeadedBackbone(config, HEADS[kind](checkpoints.BASE["hidden_size"]))
    prm_checkpoints._randomize(model, seed=1)
    prm_checkpoints._save_headed(model.eval(), folder)
    prm_checkpoints.build_tokenizer(kind).save_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return prm_checkpoints.Reference(kind, model, tokenizer)


@pytest.mark.parametrize(
    "kind, backbone",
    [
        ("ttc_value", "qwen3"),
        ("qwen_math_prm", "qwen3"),
        ("skywork", "gemma3"),
        ("qwen_math_prm", "gemma3"),
    ],
)
def test_loaded_prm_equals_its_reference(kind, backbone, tmp_path):
    reference = _write(kind, backbone, tmp_path)
    prm = ttc_jax.load_prm(tmp_path, kind)
    assert prm.backbone.config.qk_norm
    assert prm.backbone.config.sandwich_norms == (backbone == "gemma3")
    got = prm.score_batch(QUESTIONS, CANDIDATES)
    for question, candidates, scores in zip(QUESTIONS, CANDIDATES, got, strict=True):
        expected = reference.score(question, candidates)
        for a, b in zip(scores, expected, strict=True):
            np.testing.assert_allclose(a, b, atol=TOLERANCE)


def _random_config(backbone):
    config_cls, extra = BACKBONES[backbone]
    hf = config_cls(**{**checkpoints.BASE, "vocab_size": prm_checkpoints.VOCAB_SIZE, **extra})
    return ModelConfig.from_hf_dict(hf.to_dict())


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("kind", ["ttc_value", "qwen_math_prm", "math_shepherd"])
def test_random_prms_score_step_by_step_as_in_full(kind, backbone):
    config = _random_config(backbone)
    prm = PRM.random(config, kind, prm_checkpoints.build_tokenizer(kind), seed=1)
    assert prm.backbone.config.model_type == BACKBONES[backbone][0].model_type
    candidates = CANDIDATES[0][:2]
    full = prm.score(QUESTIONS[0], candidates)
    assert all(0.0 < p < 1.0 for steps in full for p in steps)
    state = prm.start(QUESTIONS[:1], num_candidates=len(candidates))
    for step in range(2):
        state, scores = prm.score_step(state, [[c[step] for c in candidates]])
        expected = [steps[step] for steps in full]
        np.testing.assert_allclose(scores[0], expected, atol=INCREMENTAL_TOLERANCE, rtol=0)
    if backbone == "gemma3":
        # The question alone is longer than the window: every step score crossed it.
        assert prm.backbone.config.window(0) == WINDOW
        assert len(prm.format.question_ids(QUESTIONS[0])) > WINDOW


def _gemma3_policy():
    """`search_helpers.tiny_policy`'s shape as a Gemma 3 with a window of 8 (shorter than
    every prompt), sliding layers alternating with global ones."""
    tokenizer = search_helpers.tokenizer()
    hf = transformers.Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        query_pre_attn_scalar=8,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
    )
    config = ModelConfig.from_hf_dict(hf.to_dict()).replace(eos_token_ids=(tokenizer.eos_token_id,))
    return ttc_jax.LanguageModel.random(config, seed=0, tokenizer=tokenizer)


@pytest.mark.parametrize("name", ["best_of_n", "beam"])
def test_search_with_a_gemma3_policy_and_a_qwen3_value_prm(name):
    policy = _gemma3_policy()
    assert policy.config.window(0) == 8 and policy.config.window(1) is None
    prm_config = _random_config("qwen3").replace(
        vocab_size=policy.config.vocab_size, max_position_embeddings=512
    )
    prm = PRM.random(prm_config, "ttc_value", policy.tokenizer, seed=3)
    config = strategy_config(name)
    config.max_new_tokens = 24
    if name == "beam":
        config.beam_width = 2
    problems = search_helpers.PROBLEMS[:2]
    results = run(config, policy, prm, problems, budget=4, seed=0)
    assert [r.problem_id for r in results] == [p.id for p in problems]
    for result in results:
        assert result.strategy == name and 1 <= len(result.candidates) <= 4
        assert any(c.step_scores for c in result.candidates)
        scores = [s for c in result.candidates for s in c.step_scores]
        assert all(0.0 < s < 1.0 for s in scores)
        assert result.accounting.policy_decode_tokens > 0
        assert result.accounting.verifier_tokens > 0
