"""PRM scorer: every kind equals its PyTorch reference; incremental scoring equals full scoring;
random PRMs of every kind score without a checkpoint.

Checkpoints are tiny and random, written in each family's published layout by
`tests.prm_checkpoints`, which also builds the references from transformers' modules.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import ttc_jax
from tests import prm_checkpoints
from ttc_jax import PRM, ModelConfig
from ttc_jax.prm import scorer
from ttc_jax.sharding import make_mesh

TOLERANCE = 1e-4
# Incremental and full scoring read the same ids through different attention paths.
INCREMENTAL_TOLERANCE = 1e-5

QUESTIONS = [
    "Janet's ducks lay 16 eggs per day. How much does she make every day at the market?",
    "What is 12 + 35?",
]
# CANDIDATES[question][candidate] = steps, of uneven counts and lengths.
CANDIDATES = [
    [
        [
            "Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
            "Step 2: She makes 9 * 2 = 18 dollars every day at the market.",
            "The answer is \\boxed{18}.",
        ],
        ["She eats three for breakfast every morning.", "The answer is \\boxed{16}."],
        ["Let x = 4 and y = 7, so x + y = 11."],
    ],
    [
        ["Let x = 12 and y = 35.", "So x + y = 47.", "Please reason step by step.", "47"],
        ["The answer is \\boxed{47}."],
        ["12 + 35 = 11", "The answer is \\boxed{11}."],
    ],
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every kind's checkpoint folder, and its PyTorch reference."""
    root = tmp_path_factory.mktemp("prms")
    references = {
        kind: prm_checkpoints.write_checkpoint(kind, root / kind) for kind in prm_checkpoints.KINDS
    }
    return root, references


@pytest.fixture(scope="module")
def checkpoint_root(written):
    return written[0]


@pytest.fixture(scope="module")
def references(written):
    return written[1]


@pytest.fixture(scope="module")
def prms(references, checkpoint_root):
    return {kind: ttc_jax.load_prm(checkpoint_root / kind, kind) for kind in references}


def _assert_nested_close(ours, theirs, atol):
    assert [len(c) for c in ours] == [len(c) for c in theirs]
    for ours_row, their_row in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(ours_row, their_row, atol=atol, rtol=0)


@pytest.mark.parametrize("kind", prm_checkpoints.KINDS)
def test_scores_match_pytorch_reference(kind, prms, references):
    for question, candidates in zip(QUESTIONS, CANDIDATES, strict=True):
        ours = prms[kind].score(question, candidates)
        assert all(0.0 <= p <= 1.0 for row in ours for p in row)
        _assert_nested_close(ours, references[kind].score(question, candidates), TOLERANCE)


def test_tied_embeddings_give_the_label_rows(tmp_path):
    # A token-logit PRM whose LM head is its embedding: the label rows come from the latter.
    reference = prm_checkpoints.write_checkpoint("math_shepherd", tmp_path, family="llama_tied")
    prm = ttc_jax.load_prm(tmp_path, "math_shepherd")
    ours = prm.score(QUESTIONS[0], CANDIDATES[0])
    _assert_nested_close(ours, reference.score(QUESTIONS[0], CANDIDATES[0]), TOLERANCE)


def _rounds(candidates):
    """Round r gives every candidate its step r, or None once it has no more steps."""
    longest = max(len(c) for cands in candidates for c in cands)
    for r in range(longest):
        yield r, [[c[r] if r < len(c) else None for c in cands] for cands in candidates]


def _check_incremental(prm, candidates_per_question, state):
    full = prm.score_batch(QUESTIONS, candidates_per_question)
    for r, new_steps in _rounds(candidates_per_question):
        state, scores = prm.score_step(state, new_steps)
        assert scores.shape == (len(QUESTIONS), len(candidates_per_question[0]))
        for b, cands in enumerate(candidates_per_question):
            for c, steps in enumerate(cands):
                if r < len(steps):
                    assert abs(scores[b, c] - full[b][c][r]) < INCREMENTAL_TOLERANCE, (b, c, r)
                else:
                    assert np.isnan(scores[b, c])
    return state


@pytest.mark.parametrize("kind", prm_checkpoints.KINDS)
def test_incremental_scores_equal_full_scoring(kind, prms):
    prm = prms[kind]
    # A 16-slot cache must grow as steps arrive.
    state = prm.start(QUESTIONS, num_candidates=3, capacity=16)
    state = _check_incremental(prm, CANDIDATES, state)
    assert state.cache.capacity > 16
    assert state.steps_done[:2].tolist() == [[3, 2, 1], [4, 1, 2]]


def test_many_candidates_are_scored_in_chunks_with_the_same_scores(prms, monkeypatch):
    prm = prms["ttc_value"]
    whole = prm.score_batch(QUESTIONS, CANDIDATES)
    # Room for one row's attention scores per call: every candidate gets its own call.
    monkeypatch.setattr(scorer, "SCORE_BATCH_ELEMENTS", 1)
    chunked = prm.score_batch(QUESTIONS, CANDIDATES)
    for whole_row, chunked_row in zip(whole, chunked, strict=True):
        for a, b in zip(whole_row, chunked_row, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def _check_second_steps(prm, state, first, followed, later):
    """Scores ``later`` steps after a reorder and checks them against full rescoring of the
    histories the candidates now hold: candidate c of question b continues
    ``first[b][followed[b, c]]`` (a None step: nothing new, scored NaN)."""
    state, scores = prm.score_step(state, later)
    histories = [
        [
            [first[b][int(i)]] + ([step] if step is not None else [])
            for i, step in zip(followed[b], later[b], strict=True)
        ]
        for b in range(len(QUESTIONS))
    ]
    full = prm.score_batch(QUESTIONS, histories)
    for b in range(len(QUESTIONS)):
        for c, steps in enumerate(histories[b]):
            if len(steps) == 2:
                assert abs(scores[b, c] - full[b][c][1]) < INCREMENTAL_TOLERANCE, (b, c)
            else:
                assert np.isnan(scores[b, c])


@pytest.mark.parametrize("kind", ["rlhflow", "ttc_likelihood"])
def test_reorder_then_continue_equals_full_rescoring(kind, prms):
    # rlhflow formats a first step unlike later ones: the step counts must follow the beams;
    # ttc_likelihood's carried likelihood must follow them too.
    prm = prms[kind]
    first = [[c[0] for c in cands] for cands in CANDIDATES]
    state = prm.start(QUESTIONS, num_candidates=3)
    state, _ = prm.score_step(state, first)
    indices = np.array([[2, 0, 2, 1], [1, 1, 0, 2]])  # 3 -> 4 candidates, with copies
    state = prm.reorder(state, indices)
    assert state.num_candidates == 4
    later = [
        ["So x + y = 47.", "She eats three eggs.", None, "The answer is \\boxed{18}."],
        ["So x + y = 47.", "12 + 35 = 47", "The answer is \\boxed{47}.", "47"],
    ]
    _check_second_steps(prm, state, first, indices, later)


@pytest.mark.parametrize("kind", ["rlhflow", "ttc_likelihood", "ttc_value"])
def test_a_reorder_of_marked_candidates_then_continue_equals_full_rescoring(kind, prms):
    """A DVTS subtree selects alone: only the candidates a mask marks move; the others keep
    their steps (whatever their indices say) and go on scoring as before."""
    prm = prms[kind]
    first = [[c[0] for c in cands] for cands in CANDIDATES]
    state = prm.start(QUESTIONS, num_candidates=3)
    state, _ = prm.score_step(state, first)
    indices = np.array([[2, 2, 2], [1, 1, 0]])
    moved = np.array([[False, True, False], [True, True, False]])
    state = prm.reorder(state, indices, moved)
    followed = np.where(moved, indices, np.arange(3))
    later = [
        ["So x + y = 47.", "She eats three eggs.", None],
        ["12 + 35 = 47", "The answer is \\boxed{47}.", "47"],
    ]
    _check_second_steps(prm, state, first, followed, later)


@pytest.mark.parametrize("kind", ["ttc_value", "ttc_likelihood"])
def test_steps_of_a_few_questions_of_many_run_only_their_rows(kind, prms):
    prm = prms[kind]
    questions, candidates = QUESTIONS * 4, CANDIDATES * 4  # 8 questions x 3 candidates
    state = prm.start(questions, num_candidates=3)
    calls = {"rows": 0}
    append_rows = prm._append_rows

    def counting(*args):
        calls["rows"] += 1
        return append_rows(*args)

    prm._append_rows = counting
    try:
        # Questions 1 and 6 take two steps, one at a time; then every question its first.
        few = {1, 6}
        for step in range(2):
            new_steps = [
                [[c[step]] if q in few and step < len(c) else [] for c in cands]
                for q, cands in enumerate(candidates)
            ]
            state, scores = prm.score_steps(state, new_steps)
        assert calls["rows"] == 2
        rest = [[[] if q in few else [c[0]] for c in cands] for q, cands in enumerate(candidates)]
        state, _ = prm.score_steps(state, rest)
    finally:
        prm._append_rows = append_rows
    histories = [
        [c[:2] if q in few else c[:1] for c in cands] for q, cands in enumerate(candidates)
    ]
    full = prm.score_batch(questions, histories)
    for q in few:
        for c, steps in enumerate(histories[q]):
            if len(steps) == 2:
                assert scores[q][c] == pytest.approx([full[q][c][1]], abs=INCREMENTAL_TOLERANCE)
    # Every question's cache holds exactly its own steps: one more step scores as in full.
    last = [
        [[c[2]] if q in few and len(c) > 2 else [] for c in cands]
        for q, cands in enumerate(candidates)
    ]
    state, scores = prm.score_steps(state, last)
    rescored = prm.score_batch(questions[1:2], [candidates[1]])
    assert scores[1][0] == pytest.approx([rescored[0][0][2]], abs=INCREMENTAL_TOLERANCE)
    np.testing.assert_array_equal(
        state.steps_done[:8].sum(axis=1),
        [
            sum(min(len(c), 3 if q in few else 1) for c in cands)
            for q, cands in enumerate(candidates)
        ],
    )


def test_sharded_mesh_gives_the_same_scores(prms, checkpoint_root):
    # The classifier head's hidden layer is split over the model axis here.
    sharded = ttc_jax.load_prm(
        checkpoint_root / "qwen_math_prm", "qwen_math_prm", mesh=make_mesh(2, 4)
    )
    state = sharded.start(QUESTIONS, num_candidates=3)
    _check_incremental(sharded, CANDIDATES, state)
    _assert_nested_close(
        sharded.score(QUESTIONS[0], CANDIDATES[0]),
        prms["qwen_math_prm"].score(QUESTIONS[0], CANDIDATES[0]),
        INCREMENTAL_TOLERANCE,
    )


def test_skywork_checkpoint_keeps_an_lm_head_we_skip(checkpoint_root):
    assert "lm_head.weight" in load_file(checkpoint_root / "skywork" / "model.safetensors")


def test_ttc_value_config_names_its_architecture(checkpoint_root):
    config = json.loads((checkpoint_root / "ttc_value" / "config.json").read_text())
    assert config["architectures"] == ["TtcValuePRM"]


# -- bad input ----------------------------------------------------------------------------------


def test_a_likelihood_prm_with_untied_embeddings_is_refused(checkpoint_root, tmp_path):
    # Its likelihood reads the embeddings as the unembedding; untied, they would be the wrong
    # matrix, so the checkpoint is refused before any weight is read.
    folder = tmp_path / "untied"
    shutil.copytree(checkpoint_root / "ttc_likelihood", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    with pytest.raises(ttc_jax.CheckpointError, match="tie_word_embeddings"):
        ttc_jax.load_prm(folder, "ttc_likelihood")


def test_unknown_kind(checkpoint_root):
    with pytest.raises(ValueError, match=r"unknown PRM kind 'orm'.*math_shepherd"):
        ttc_jax.load_prm(checkpoint_root / "ttc_value", "orm")


def test_a_misspelt_format_option_lists_the_valid_ones(checkpoint_root):
    with pytest.raises(
        ValueError,
        match=r"unknown ttc_value format option\(s\) 'step_ending'; valid options: "
        "question_end, step_end",
    ):
        ttc_jax.load_prm(checkpoint_root / "ttc_value", "ttc_value", step_ending="\n")


def test_an_input_past_the_prms_context_is_refused(prms):
    prm = prms["ttc_value"]
    context = prm.backbone.config.max_position_embeddings
    with pytest.raises(ValueError, match=f"exceeds the PRM's context of {context} tokens"):
        prm.score(QUESTIONS[0], [["word " * context]])


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "non-empty list of candidates"),
        (["one step", "another"], "candidate 0 is a string"),
        ([["a step"], []], "candidate 1 has no steps"),
        ([["a step", 3]], "step 1 of candidate 0 is int"),
    ],
)
def test_bad_steps(prms, steps, message):
    with pytest.raises(ValueError, match=message):
        prms["ttc_value"].score(QUESTIONS[0], steps)


def test_bad_incremental_input(prms):
    prm = prms["ttc_value"]
    state = prm.start(QUESTIONS, num_candidates=2)
    with pytest.raises(ValueError, match=r"new_steps must be \[2 questions\]\[2 candidates\]"):
        prm.score_step(state, [["a", "b", "c"], ["a", "b"]])
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 2\)"):
        prm.reorder(state, [[0, 2], [0, 1]])
    with pytest.raises(ValueError, match="a string, not a list of steps"):
        prm.score_steps(state, [["a", ["b"]], [[], []]])


def test_chat_kind_needs_a_chat_template(checkpoint_root):
    # Math-Shepherd's tokenizer has no chat template.
    with pytest.raises(ValueError, match="chat template"):
        ttc_jax.load_prm(checkpoint_root / "math_shepherd", "rlhflow")


def _mutated(checkpoint_root, tmp_path, kind, change):
    folder = tmp_path / kind
    shutil.copytree(checkpoint_root / kind, folder)
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")
    return folder


def test_missing_head_tensor(references, checkpoint_root, tmp_path):
    folder = _mutated(checkpoint_root, tmp_path, "qwen_math_prm", lambda t: t.pop("score.2.bias"))
    with pytest.raises(ttc_jax.MissingTensorError, match=r"qwen_math_prm head.*score\.2\.bias"):
        ttc_jax.load_prm(folder, "qwen_math_prm")


def test_causal_lm_is_not_a_value_prm(references, checkpoint_root):
    with pytest.raises(ttc_jax.MissingTensorError, match=r"v_head\.summary\.weight"):
        ttc_jax.load_prm(checkpoint_root / "math_shepherd", "skywork")


def test_unexpected_head_tensor(references, checkpoint_root, tmp_path):
    def add(tensors):
        tensors["score.4.weight"] = np.zeros((2, 2), np.float32)

    folder = _mutated(checkpoint_root, tmp_path, "qwen_math_prm", add)
    with pytest.raises(ttc_jax.UnexpectedTensorError, match=r"score\.4\.weight"):
        ttc_jax.load_prm(folder, "qwen_math_prm")


def test_stray_lm_head_is_unexpected(references, checkpoint_root, tmp_path):
    def add(tensors):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()

    folder = _mutated(checkpoint_root, tmp_path, "ttc_value", add)
    with pytest.raises(ttc_jax.UnexpectedTensorError, match=r"lm_head\.weight.*ttc_value"):
        ttc_jax.load_prm(folder, "ttc_value")


def test_mis_shaped_head_tensor(references, checkpoint_root, tmp_path):
    def widen(tensors):
        tensors["v_head.summary.weight"] = np.zeros((2, 64), np.float32)

    folder = _mutated(checkpoint_root, tmp_path, "skywork", widen)
    with pytest.raises(ttc_jax.ShapeMismatchError, match=r"v_head\.summary\.weight.*\(2, 64\)"):
        ttc_jax.load_prm(folder, "skywork")


# -- random PRMs --------------------------------------------------------------------------------

RANDOM_CONFIG = ModelConfig(
    vocab_size=prm_checkpoints.VOCAB_SIZE,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    intermediate_size=48,
)


@pytest.fixture(scope="module")
def chat_tokenizer():
    """A tokenizer every kind can use: it has a chat template, "<extra_0>" and "ки"."""
    return prm_checkpoints.build_tokenizer("qwen_math_prm")


@pytest.mark.parametrize("kind", prm_checkpoints.KINDS)
def test_random_prm_scores_in_full_and_incrementally(kind, chat_tokenizer):
    prm = PRM.random(RANDOM_CONFIG, kind, chat_tokenizer, seed=1)
    assert prm.kind == kind and prm.backbone.tokenizer is chat_tokenizer
    candidates = CANDIDATES[0][:2]
    full = prm.score(QUESTIONS[0], candidates)
    assert [len(steps) for steps in full] == [len(c) for c in candidates]
    assert all(0.0 < p < 1.0 for steps in full for p in steps)
    state = prm.start(QUESTIONS[:1], num_candidates=len(candidates))
    for step in range(2):
        state, scores = prm.score_step(state, [[c[step] for c in candidates]])
        expected = [steps[step] for steps in full]
        np.testing.assert_allclose(scores[0], expected, atol=INCREMENTAL_TOLERANCE, rtol=0)


@pytest.mark.parametrize("kind", ["rlhflow", "qwen_math_prm"])
def test_random_chat_prm_needs_a_chat_template(kind):
    tokenizer = prm_checkpoints.build_tokenizer("math_shepherd")
    with pytest.raises(ValueError, match="chat template"):
        PRM.random(RANDOM_CONFIG, kind, tokenizer)


def test_random_prm_depends_on_the_seed_only(chat_tokenizer):
    def scores(seed, mesh=None):
        prm = PRM.random(RANDOM_CONFIG, "qwen_math_prm", chat_tokenizer, seed=seed, mesh=mesh)
        return np.array(prm.score(QUESTIONS[1], [CANDIDATES[1][0]])[0])

    np.testing.assert_allclose(scores(3, make_mesh(2, 4)), scores(3), atol=INCREMENTAL_TOLERANCE)
    assert np.abs(scores(3) - scores(4)).max() > 1e-4


def test_random_prm_format_options_and_vocabulary_check():
    tokenizer = prm_checkpoints.build_tokenizer("math_shepherd")
    prm = PRM.random(RANDOM_CONFIG, "math_shepherd", tokenizer, step_tag="ки", good_label="+")
    assert prm.format.step_tag_id == tokenizer.encode(" ки", add_special_tokens=False)[-1]
    small = dataclasses.replace(RANDOM_CONFIG, vocab_size=100)
    with pytest.raises(ValueError, match=r"tokenizer has 321 tokens.*vocab_size of 100"):
        PRM.random(small, "math_shepherd", tokenizer)
