"""Real weights: SmolLM2-135M-Instruct (GGUF, Q4_1) against transformers loading the same file."""

import numpy as np
import pytest
import torch
import transformers

import ttc_jax

GREEDY_TOKENS = 32


@pytest.fixture(scope="module")
def ours(smollm2_path):
    return ttc_jax.load_lm(smollm2_path)


@pytest.fixture(scope="module")
def reference(smollm2_path):
    return transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="module")
def prompt_ids(ours):
    messages = [{"role": "user", "content": "What is 12 + 35? Explain each step."}]
    text = ours.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    return np.asarray(ours.tokenizer(text)["input_ids"])[None]


def test_config_from_metadata(ours):
    cfg = ours.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (30, 576, 9, 3)
    assert (cfg.intermediate_size, cfg.rope_theta, cfg.vocab_size) == (1536, 1e5, 49152)
    assert cfg.tie_word_embeddings and cfg.eos_token_ids == (2,)


def test_logits_match_transformers(ours, reference, prompt_ids):
    logits = np.asarray(ours.logits(prompt_ids))
    with torch.no_grad():
        expected = reference(torch.tensor(prompt_ids)).logits.numpy()
    assert np.abs(logits - expected).max() <= 1e-3


def test_greedy_tokens_match_transformers(ours, reference, prompt_ids):
    with torch.no_grad():
        expected = reference.generate(
            torch.tensor(prompt_ids),
            max_new_tokens=GREEDY_TOKENS,
            min_new_tokens=GREEDY_TOKENS,
            do_sample=False,
        )[0, prompt_ids.shape[1] :].tolist()
    tokens = prompt_ids[0].tolist()
    for _ in range(GREEDY_TOKENS):
        tokens.append(int(np.asarray(ours.logits(np.asarray([tokens]))[0, -1]).argmax()))
    assert tokens[prompt_ids.shape[1] :] == expected
    assert len(set(expected)) > 4  # a real continuation, not one repeated token
