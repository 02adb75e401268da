"""`generate`: N samples per prompt from one shared-prefix decode, as plain Python records."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ttc_jax.engine.decode import Finish
from ttc_jax.engine.engine import Engine
from ttc_jax.engine.sampling import SamplingConfig
from ttc_jax.engine.stopping import truncate_at_stop
from ttc_jax.lm import LanguageModel, bucket_length

FINISH_NAMES = {Finish.EOS: "eos", Finish.STOP: "stop", Finish.LENGTH: "length"}


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated continuation."""

    text: str  # decoded continuation, cut after the first stop string; no EOS text
    token_ids: list[int]  # every generated token, EOS included
    logprob: float  # summed log-probability of token_ids under the model (temperature 1)
    finish_reason: str  # "eos" | "stop" | "length"


def generate(
    lm: LanguageModel,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: Sequence[str] | None = None,
    seed: int = 0,
    *,
    engine: Engine | None = None,
) -> list[list[Sample]]:
    """Samples ``n`` continuations of each prompt; returns ``result[prompt][sample]``.

    Each prompt is prefilled once and its KV cache shared by its ``n`` samples. Prompts are
    strings (tokenized with ``lm.tokenizer``, special tokens included) or token id lists.
    ``temperature=0`` is greedy. Generation of a sample stops at an EOS id, at the end of any
    ``stop`` string (even one spanning several tokens) or after ``max_new_tokens`` tokens.
    The same ``seed`` gives the same samples, whatever the batch, padding or mesh.
    ``engine``: an `Engine` of ``lm`` with other options than ``lm.engine``'s.
    """
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be >= 1, got {n} and {max_new_tokens}")
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k)
    stop = tuple(stop or ())
    if engine is None:
        engine = lm.engine
    elif engine.lm is not lm:
        raise ValueError("engine belongs to another language model")
    batch = engine.layout(engine.tokenize(prompts))
    capacity = bucket_length(max_new_tokens)
    state = engine.start(batch, n, capacity, seed)
    _, out = engine.extend(
        state, max_tokens=capacity, token_limit=max_new_tokens, sampling=sampling, stop=stop
    )
    new_tokens = engine.new_tokens(out, batch.num_prompts)
    finish, logprob = np.asarray(out.finish), np.asarray(out.logprob)
    eos_ids = set(np.asarray(engine.eos_ids).tolist())
    results = []
    for b in range(batch.num_prompts):
        samples = []
        for j in range(n):
            ids = new_tokens[b][j]
            reason = Finish(int(finish[b, j]))
            text_ids = ids[:-1] if reason == Finish.EOS and ids and ids[-1] in eos_ids else ids
            text = lm.tokenizer.decode(text_ids) if lm.tokenizer is not None else ""
            if reason == Finish.STOP:
                text = truncate_at_stop(text, stop)
            samples.append(Sample(text, ids, float(logprob[b, j]), FINISH_NAMES[reason]))
        results.append(samples)
    return results
