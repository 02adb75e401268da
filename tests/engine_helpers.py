"""Tiny random models, a character tokenizer and full-forward references for engine tests."""

from __future__ import annotations

import numpy as np

import ttc_jax
from ttc_jax.models.config import ModelConfig

NEWLINE = 5  # a token id whose text is "\n" in `CharTokenizer`


def is_newline(token: int) -> bool:
    # One id in eight is a newline, so untrained models end steps every few tokens.
    return token % 8 == NEWLINE


TINY = ModelConfig(
    vocab_size=64,
    hidden_size=64,
    num_layers=2,
    num_heads=8,
    num_kv_heads=4,
    head_dim=8,
    intermediate_size=96,
    rope_theta=10000.0,
    eos_token_ids=(),
)


class CharTokenizer:
    """One character per token id; ids 5, 13, 21, ... are newlines. Enough for stop strings."""

    eos_token_id = None

    def __init__(self, vocab_size: int):
        self.texts = ["\n" if is_newline(i) else chr(ord("A") + i % 58) for i in range(vocab_size)]

    def __len__(self):
        return len(self.texts)

    def batch_decode(self, sequences):
        return [self.decode(ids) for ids in sequences]

    def decode(self, ids, skip_special_tokens=False):  # it has no special tokens
        return "".join(self.texts[i] for i in ids)

    def __call__(self, text):
        return {"input_ids": [self.texts.index(c) for c in text]}


def tiny_lm(
    mesh=None, seed=0, scale_logits=True, dtype="float32", **overrides
) -> ttc_jax.LanguageModel:
    """A random tiny model. Its untrained logits are nearly uniform, so the LM head is scaled
    up to make distributions peaked and greedy choices unambiguous."""
    config = TINY.replace(**overrides)
    lm = ttc_jax.LanguageModel.random(
        config, dtype, mesh=mesh, seed=seed, tokenizer=CharTokenizer(config.vocab_size)
    )
    if scale_logits:
        lm.params["lm_head"] = lm.params["lm_head"] * 20.0
    return lm


def full_logprobs(lm, prompt: list[int], continuation: list[int]) -> np.ndarray:
    """Log-probability of each continuation token from one full forward pass."""
    tokens = np.asarray([prompt + continuation])
    logits = np.asarray(lm.logits(tokens))[0, len(prompt) - 1 : -1]
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp[np.arange(len(continuation)), continuation]


def prompts(seed: int, lengths, vocab: int = TINY.vocab_size) -> list[list[int]]:
    rs = np.random.RandomState(seed)
    # No newlines in prompts, so stop strings only fire on generated text.
    allowed = [t for t in range(vocab) if not is_newline(t)]
    return [[int(t) for t in rs.choice(allowed, size=n)] for n in lengths]
