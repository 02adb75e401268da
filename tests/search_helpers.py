"""A tiny random policy whose samples hold steps and boxed answers, and a scripted PRM whose
every score is known and every call is logged, for testing search strategies."""

from __future__ import annotations

import dataclasses
import hashlib
import types

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import ttc_jax
from ttc_jax.engine.selection import moved_mask
from ttc_jax.math import Problem
from ttc_jax.models.config import ModelConfig

QUESTIONS = ["What is 1 + 2?", "What is 2 + 2?", "What is 3 + 1?", "What is 4 - 3?", "What is 5?"]
# Answers the boxed tokens can give, so some samples are right and some wrong.
PROBLEMS = [Problem(id=f"q{i}", problem=q, answer=str(i % 3 + 1)) for i, q in enumerate(QUESTIONS)]
# Single tokens that end a step, and boxed answers: random text is full of both.
STEP_TOKENS = ["\n", ".\n", " = 3\n", " + 1\n"]
ANSWER_TOKENS = [f"The answer is \\boxed{{{k}}}." for k in range(1, 4)]
EOS = "<eos>"


def tokenizer() -> PreTrainedTokenizerFast:
    """Characters of the prompts, plus multi-character step and answer tokens and an EOS."""
    alphabet = sorted(set("".join(QUESTIONS) + "Problem:Solution:\n 0123456789+-=?.\\{}"))
    vocab = {c: i for i, c in enumerate(["[UNK]", *alphabet])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token=EOS)
    fast.add_tokens([t for t in STEP_TOKENS + ANSWER_TOKENS if t not in vocab])
    return fast


def tiny_policy(seed: int = 0) -> ttc_jax.LanguageModel:
    """A random tiny Llama over `tokenizer`: nearly uniform, so about one token in seven ends
    a step, one in ten boxes an answer and one in thirty ends the solution."""
    tok = tokenizer()
    config = ModelConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        intermediate_size=48,
        max_position_embeddings=512,
        eos_token_ids=(tok.eos_token_id,),
    )
    return ttc_jax.LanguageModel.random(config, seed=seed, tokenizer=tok)


def scripted_score(question: str, step: str) -> float:
    """A fixed pseudo-random score in (0, 1) of a step of a question."""
    digest = hashlib.blake2b(f"{question}\x00{step}".encode(), digest_size=4).digest()
    return (int.from_bytes(digest, "little") + 0.5) / 2**32


@dataclasses.dataclass
class ScriptedState:
    questions: list[str]
    steps: list[list[list[str]]]  # [q][n] steps scored so far
    processed: np.ndarray
    lineage: list[list[int]]  # [q][n] the first-round slot each candidate descends from

    @property
    def num_candidates(self) -> int:
        return len(self.steps[0])

    def checkpoint(self):
        return [[list(s) for s in row] for row in self.steps]


class ScriptedPRM:
    """The PRM interface search uses, on the host, scoring by `scripted_score`. Logs, in
    order: every scored slot as ("step", call number, question, slot, steps, scores), every
    rollback as ("rollback", questions) and every reorder as ("reorder", indices, moved)
    with ``moved`` the [Q, N] bool mask of the slots that selected."""

    kind = "scripted"

    def __init__(self, policy: ttc_jax.LanguageModel):
        self.backbone = types.SimpleNamespace(config=policy.config, tokenizer=policy.tokenizer)
        self.format = types.SimpleNamespace(
            question_ids=lambda q: [1] * len(q), step_ids=lambda s, i: ([2] * (len(s) + 1), 0)
        )
        self.calls: list[tuple] = []
        self.revision_questions: list[str] = []
        self.scoring_calls = 0

    @property
    def reorders(self) -> list[np.ndarray]:
        return [call[1] for call in self.calls if call[0] == "reorder"]

    def start(self, questions, num_candidates, room_for=()):
        return ScriptedState(
            list(questions),
            [[[] for _ in range(num_candidates)] for _ in questions],
            np.array([len(q) for q in questions]),
            [list(range(num_candidates)) for _ in questions],
        )

    def admit(self, state, slots, questions):
        self.calls.append(("admit", list(slots), list(questions)))
        for row, question in zip(slots, questions, strict=True):
            state.questions[row] = question
            state.steps[row] = [[] for _ in range(state.num_candidates)]
            state.processed[row] = len(question)
            state.lineage[row] = list(range(state.num_candidates))
        return state

    def score_steps(self, state, new_steps):
        self.scoring_calls += 1
        scores = []
        for q, row in enumerate(new_steps):
            out = []
            for n, steps in enumerate(row):
                values = [scripted_score(state.questions[q], s) for s in steps]
                if steps:
                    self.calls.append(("step", self.scoring_calls, q, n, list(steps), values))
                state.steps[q][n].extend(steps)
                state.processed[q] += sum(len(s) + 1 for s in steps)
                out.append(values)
            scores.append(out)
        return state, scores

    def reorder(self, state, indices, moved=None):
        indices = np.asarray(indices).copy()
        everything = np.arange(len(indices))
        mask = moved_mask(everything if moved is None else moved, *indices.shape)
        indices[~mask] = np.nonzero(~mask)[1]  # the others follow themselves
        self.calls.append(("reorder", indices, mask))
        steps = [[list(state.steps[q][i]) for i in row] for q, row in enumerate(indices)]
        lineage = [[state.lineage[q][i] for i in row] for q, row in enumerate(indices)]
        return ScriptedState(state.questions, steps, state.processed, lineage)

    def rollback(self, state, saved, questions=None):
        questions = range(len(saved)) if questions is None else [int(q) for q in questions]
        self.calls.append(("rollback", list(questions)))
        steps = [saved[q] if q in questions else row for q, row in enumerate(state.steps)]
        return ScriptedState(state.questions, steps, state.processed, state.lineage)

    def score_batch(self, questions, candidates):
        self.revision_questions.extend(questions)
        return [
            [[scripted_score(q, s) for s in c] for c in cs]
            for q, cs in zip(questions, candidates, strict=True)
        ]

    def input_length(self, question, steps):
        return len(question) + sum(len(s) + 1 for s in steps)
