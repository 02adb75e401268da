"""Real weights: SmolLM2-135M-Instruct (GGUF, Q4_1) against transformers loading the same file."""

import numpy as np
import pytest
import torch
import transformers

import ttc_jax

pytestmark = pytest.mark.slow

GREEDY_TOKENS = 32
TOKENIZER_TEXTS = [
    "What is 12 + 35? Explain each step.",
    "  leading spaces,\ttabs and\n\nblank lines  ",
    "Unicode: café, naïve, 数学, emoji 🙂, Ωμέγα",
    "LaTeX: $x^2 + \\frac{1}{2} = \\boxed{42}$",
    "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>",
    "",
]


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


@pytest.fixture(scope="module")
def reference_tokenizer(smollm2_path):
    return transformers.AutoTokenizer.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name
    )


def test_tokenizer_from_parsed_metadata_equals_transformers(ours, reference_tokenizer):
    """load_lm builds the tokenizer from the metadata it parsed; transformers parses the file
    itself. Both must be the same tokenizer."""
    mine, theirs = ours.tokenizer, reference_tokenizer
    assert type(mine) is type(theirs)
    assert mine.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()
    assert mine.get_vocab() == theirs.get_vocab() and len(mine) == len(theirs) == 49152
    assert mine.special_tokens_map == theirs.special_tokens_map
    assert mine.all_special_ids == theirs.all_special_ids
    assert (mine.eos_token, mine.eos_token_id) == (theirs.eos_token, theirs.eos_token_id)
    assert (mine.bos_token_id, mine.pad_token_id, mine.unk_token_id) == (
        theirs.bos_token_id,
        theirs.pad_token_id,
        theirs.unk_token_id,
    )
    assert mine.chat_template == theirs.chat_template and mine.chat_template
    for special in (True, False):
        ids = theirs(TOKENIZER_TEXTS, add_special_tokens=special)["input_ids"]
        assert mine(TOKENIZER_TEXTS, add_special_tokens=special)["input_ids"] == ids
        for row in ids:
            assert mine.decode(row) == theirs.decode(row)
            assert mine.decode(row, skip_special_tokens=True) == theirs.decode(
                row, skip_special_tokens=True
            )
    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 12 + 35?"},
        {"role": "assistant", "content": "47"},
        {"role": "user", "content": "And 12 * 35?"},
    ]
    for prompt in (True, False):
        for tokenize in (True, False):
            kwargs = dict(add_generation_prompt=prompt, tokenize=tokenize)
            assert mine.apply_chat_template(conversation, **kwargs) == theirs.apply_chat_template(
                conversation, **kwargs
            )


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


def _chat(lm, question):
    messages = [{"role": "user", "content": question}]
    return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_engine_greedy_matches_transformers_on_four_prompts(ours, reference):
    questions = ["What is 2+2?", "Write a haiku about the sea.", "Name a prime above 10.", "Hi"]
    prompts = [_chat(ours, q) for q in questions]
    results = ttc_jax.generate(ours, prompts, n=2, max_new_tokens=GREEDY_TOKENS, temperature=0)
    for prompt, samples in zip(prompts, results, strict=True):
        ids = torch.tensor([ours.tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            expected = reference.generate(ids, max_new_tokens=GREEDY_TOKENS, do_sample=False)
        expected = expected[0, ids.shape[1] :].tolist()
        assert samples[0].token_ids == samples[1].token_ids == expected
        assert samples[0].finish_reason == ("eos" if len(expected) < GREEDY_TOKENS else "length")


def test_sampled_steps_stop_at_the_delimiter(ours):
    prompt = _chat(ours, "Explain, one step per line, how to add 17 and 25.")
    samples = ttc_jax.generate(ours, [prompt], n=8, max_new_tokens=64, stop=["\n"], seed=0)[0]
    assert any(s.finish_reason == "stop" for s in samples)
    for sample in samples:
        newlines = sample.text.count("\n")
        assert newlines == (1 if sample.finish_reason == "stop" else 0)
        assert sample.finish_reason != "stop" or sample.text.endswith("\n")


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
