"""A sampled special token stays in a sample's token ids and is left out of its text."""

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import ttc_jax
from tests import engine_helpers, prm_checkpoints
from ttc_jax.engine import Engine

VOCAB = engine_helpers.TINY.vocab_size


def token_text(i: int) -> str:
    """Even ids are special tokens ("<s0>", "<s2>", ...), odd ids one letter each."""
    return f"<s{i}>" if i % 2 == 0 else chr(ord("A") + i // 2)


def half_special_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({token_text(i): i for i in range(VOCAB)}))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([token_text(i) for i in range(0, VOCAB, 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.fixture(scope="module")
def tokenizer():
    return prm_checkpoints.build_tokenizer("math_shepherd")


def test_text_leaves_out_special_tokens_sampled_mid_solution(tokenizer):
    config = engine_helpers.TINY.replace(vocab_size=prm_checkpoints.VOCAB_SIZE)
    engine = Engine(ttc_jax.LanguageModel.random(config, tokenizer=tokenizer))

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    # A special token the tokenizer's map does not name (its backend marks it special).
    header = tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    ids = [*encode("a) x=x+"), bos, *encode("3+1"), header, *encode("=4"), eos]
    assert tokenizer.decode(ids) == "a) x=x+<|bos|>3+1<|start_header_id|>=4<|eot|>"
    assert engine.text_of(ids) == "a) x=x+3+1=4"


def test_sampled_special_tokens_stay_in_token_ids_but_not_in_text():
    lm = ttc_jax.LanguageModel.random(engine_helpers.TINY, tokenizer=half_special_tokenizer())
    [samples] = ttc_jax.generate(lm, ["ABC"], n=4, max_new_tokens=12, temperature=1.0, seed=0)
    specials = 0
    for sample in samples:
        assert len(sample.token_ids) == 12
        specials += sum(i % 2 == 0 for i in sample.token_ids)
        assert sample.text == "".join(token_text(i) for i in sample.token_ids if i % 2)
        assert "<" not in sample.text
    assert specials > 0  # the situation this test is about did occur
