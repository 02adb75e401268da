"""Checks every model family passes against transformers: cached decoding through the engine's
shared-prefix KV cache, and greedy generation."""

from __future__ import annotations

import numpy as np
import torch

import ttc_jax
from tests import checkpoints, engine_helpers
from tests.test_kv_cache import CachedModel

TOLERANCE = 1e-4


def assert_cached_decoding_matches(lm, model, prompt_lengths=(7, 3), total=21, seed=0):
    """Prefills prompts of ``prompt_lengths`` tokens (one per question, two samples each), then
    appends the rest of each sequence token by token, and a last chunk of several tokens; the
    logits at every position equal transformers' full forward pass."""
    vocab = model.config.vocab_size
    sequences = np.random.RandomState(seed).randint(0, vocab, (len(prompt_lengths), total))
    reference = checkpoints.torch_logits(model, sequences)
    cached = CachedModel(lm)
    prompts = [list(s[:n]) for s, n in zip(sequences, prompt_lengths, strict=True)]
    cache = cached.prefill(prompts, max(prompt_lengths), 2, 32)
    for step in range(total - max(prompt_lengths) - 4):
        tokens = np.array([s[n + step] for s, n in zip(sequences, prompt_lengths, strict=True)])
        tokens = np.repeat(tokens[:, None, None], 2, axis=1)
        hidden, cache = cached.append(cache, tokens, np.ones(tokens.shape, bool))
        logits = cached.logits(hidden.reshape(-1, 1, hidden.shape[-1]))[:, 0]
        for b, n in enumerate(prompt_lengths):
            for sample in range(2):
                got = logits[2 * b + sample]
                np.testing.assert_allclose(got, reference[b, n + step], atol=TOLERANCE)
    done = total - max(prompt_lengths) - 4
    chunk = np.stack(
        [s[n + done : n + done + 4] for s, n in zip(sequences, prompt_lengths, strict=True)]
    )
    chunk = np.repeat(chunk[:, None], 2, axis=1)
    hidden, cache = cached.append(cache, chunk, np.ones(chunk.shape, bool))
    logits = cached.logits(hidden[:, 0])
    for b, n in enumerate(prompt_lengths):
        np.testing.assert_allclose(logits[b], reference[b, n + done : n + done + 4], atol=TOLERANCE)


def assert_greedy_matches(lm, model, prompt, steps=12):
    """The engine's greedy tokens equal transformers' argmax, token after token."""
    lm = ttc_jax.LanguageModel(
        lm.config.replace(eos_token_ids=()),
        lm.params,
        lm.mesh,
        lm.rules,
        lm.dtype,
        engine_helpers.CharTokenizer(lm.config.vocab_size),
    )
    ours = ttc_jax.generate(lm, [prompt], max_new_tokens=steps, temperature=0)[0][0]
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    assert ours.token_ids == tokens[len(prompt) :]
