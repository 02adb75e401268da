"""The embedded world's tokenizer: a word-level vocabulary built with the `tokenizers` library.

Every number 0-99 is one token, so each step of a solution (``x=3+8=1``) is a one-token
table lookup rather than digit-by-digit arithmetic: the fastest thing for a small model to
learn. The fixed texts of prompts and problems (``Problem:``, ``. Working modulo 10, apply ``,
``The answer is \\boxed{``) are single tokens too, which keeps sequences short; any other
text falls back to one token per character, so every printable string can be encoded.

A split pattern tries the fixed texts first (longest first), then a number of one or two
digits, then any single character; the decoder concatenates token texts, so decoding gives
back exactly the encoded text. Encoding with special tokens prepends ``<bos>``; generation
ends with ``<eos>``. The tokenizer is saved as ``tokenizer.json`` and loaded through
transformers like any other.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from ttc_jax.embedded.task import TEMPLATE_TEXTS
from ttc_jax.math.prompts import PromptConfig

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def fixed_texts() -> tuple[str, ...]:
    """Texts kept whole: the prompt headers and the problem and answer templates."""
    prompt = PromptConfig()
    headers = (prompt.problem_header, prompt.solution_header, prompt.attempt_header)
    return (*headers, *TEMPLATE_TEXTS)


def vocabulary() -> list[str]:
    """Token texts in id order: special tokens, fixed texts, numbers, single characters."""
    characters = sorted(set(string.printable) - set("\x0b\x0c\r\t"))
    return [*SPECIAL_TOKENS, *fixed_texts(), *characters]


def build_tokenizer() -> Tokenizer:
    vocab = vocabulary()
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    texts = sorted(fixed_texts(), key=len, reverse=True)
    pattern = "|".join([*(re.escape(t) for t in texts), r"[\s\S]"])
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    bos = (BOS, vocab.index(BOS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[bos]
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def save_tokenizer(folder: str | Path):
    """Writes ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``; returns the
    transformers tokenizer read back from it."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        # Token texts already hold their spaces; the default clean-up would remove some.
        clean_up_tokenization_spaces=False,
    )
    wrapped.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))
