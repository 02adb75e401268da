"""The reference side of the benchmarks: transformers' PyTorch Llama with the weights we use
(random ones of a benchmark shape, or a real checkpoint both sides load, `checkpoint_models`).

Weights are drawn once, by transformers' own initialiser, and loaded into our model through
the same strict loader that reads real checkpoints (`ttc_jax.models.checkpoint.load_params`),
so both implementations hold the same numbers and no second layout mapping exists to drift.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from ttc_jax.bench.shapes import transformers_config
from ttc_jax.lm import LanguageModel, load_lm
from ttc_jax.models.checkpoint import load_params
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import resolve_dtype
from ttc_jax.sharding import ShardingRules, make_mesh

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# Below this share of agreeing greedy tokens the two models are not the same model (a wrong
# weight layout agrees on about 1 / vocab); above it, low-precision rounding explains the rest.
MIN_GREEDY_AGREEMENT = 0.5


class TorchStateSource:
    """A `ttc_jax.models.checkpoint.TensorSource` over a live transformers model."""

    name = "transformers model (random weights)"

    def __init__(self, model: torch.nn.Module):
        self._state = model.state_dict()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(tensor.shape) for key, tensor in self._state.items()}

    def read(self, key: str) -> np.ndarray:
        # float32 holds bfloat16 values exactly; the loader casts back to the model dtype.
        return self._state[key].detach().float().cpu().numpy()


def torch_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def random_models(
    cfg: ModelConfig, dtype: str, seed: int = 0
) -> tuple[LanguageModel, transformers.LlamaForCausalLM]:
    """Our model and a transformers ``LlamaForCausalLM`` holding identical random weights.

    Weights are rounded to ``dtype`` first. On a CPU the transformers model then computes in
    float32 whatever ``dtype`` is (its bfloat16 CPU kernels are not what anyone would run).
    """
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers_config(cfg))
    model = model.to(TORCH_DTYPES[dtype])
    device = torch_device()
    if device == "cpu":
        model = model.float()
    model = model.to(device).eval()
    mesh, rules = make_mesh(1, 1), ShardingRules()
    params = load_params(TorchStateSource(model), cfg, dtype, mesh, rules)
    return LanguageModel(cfg, params, mesh, rules, resolve_dtype(dtype)), model


def checkpoint_models(path: Path, dtype: str) -> tuple[LanguageModel, torch.nn.Module]:
    """Our model and transformers' loaded from the same real checkpoint (an HF folder or a
    GGUF file, which transformers dequantises itself), EOS off on our side so that every
    sample runs its full token budget (`sample_with_transformers` turns it off on theirs).

    transformers computes in float32 on a CPU whatever ``dtype`` is, as for random weights.
    """
    path = Path(path)
    lm = load_lm(path, dtype=dtype)
    lm = LanguageModel(
        lm.config.replace(eos_token_ids=()), lm.params, lm.mesh, lm.rules, lm.dtype, lm.tokenizer
    )
    torch_dtype = torch.float32 if torch_device() == "cpu" else TORCH_DTYPES[dtype]
    if path.is_file():
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch_dtype
        )
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    return lm, model.to(torch_device()).eval()


@dataclasses.dataclass(frozen=True)
class Parity:
    """Greedy next-token agreement of the two models at every position of one prompt."""

    positions: int
    greedy_agreement: float  # share of positions whose argmax token is the same
    max_logit_diff: float


def greedy_parity(lm: LanguageModel, model, prompt: list[int]) -> Parity:
    """Compares full-forward logits; raises when the models are evidently not the same."""
    ours = np.asarray(lm.logits(np.asarray([prompt])))[0]
    with torch.inference_mode():
        ids = torch.tensor([prompt], device=model.device)
        theirs = model(ids).logits[0].float().cpu().numpy()
    agreement = float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))
    parity = Parity(len(prompt), agreement, float(np.abs(ours - theirs).max()))
    if agreement < MIN_GREEDY_AGREEMENT:
        raise AssertionError(f"our model and transformers' disagree: {parity}")
    return parity


@dataclasses.dataclass(frozen=True)
class ReferenceRun:
    seconds: float
    kv_bytes: int  # bytes of the returned key/value cache


def _synchronize(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def sample_with_transformers(
    model, prompt: list[int], samples: int, new_tokens: int, seed: int
) -> ReferenceRun:
    """``samples`` continuations of ``prompt`` by ``model.generate``: plain temperature-1
    sampling (top-k off; transformers' default would be 50) and exactly ``new_tokens`` each."""
    config = transformers.GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_return_sequences=samples,
        eos_token_id=None,
        pad_token_id=0,
        return_dict_in_generate=True,
    )
    ids = torch.tensor([prompt], device=model.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        _synchronize(model)
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        _synchronize(model)
        seconds = time.perf_counter() - start
    if tuple(out.sequences.shape) != (samples, len(prompt) + new_tokens):
        raise AssertionError(f"transformers returned sequences of shape {out.sequences.shape}")
    # transformers 5.17 still names the cache ``past_key_values``.
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    kv_bytes = sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )
    return ReferenceRun(seconds, kv_bytes)
