"""`generate`: N samples per prompt from one shared-prefix decode, as plain Python records."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ttc_jax.bucketing import bucket_length
from ttc_jax.engine.decode import Finish
from ttc_jax.engine.engine import Engine, check_count, default_engine
from ttc_jax.engine.sampling import SamplingConfig
from ttc_jax.engine.stopping import stop_strings, truncate_at_stop
from ttc_jax.lm import LanguageModel

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
    stop: str | Sequence[str] | None = None,
    seed: int = 0,
    *,
    engine: Engine | None = None,
) -> list[list[Sample]]:
    """Samples ``n`` continuations of each prompt; returns ``result[prompt][sample]``.

    Each prompt is prefilled once and its KV cache shared by its ``n`` samples. Prompts are
    strings (tokenized with ``lm.tokenizer``, special tokens included) or token id lists.
    ``temperature=0`` is greedy. Generation of a sample stops at an EOS id, at the end of a
    ``stop`` string (one string, or a list of them; also one spanning several tokens) or
    after ``max_new_tokens`` tokens. A sample depends only on ``seed``, its prompt's tokens
    and its index among the prompt's ``n``: not on the other prompts of the batch, their
    order, padding or the mesh (so two equal prompts get equal samples).
    Changing ``temperature``, ``top_p`` or ``top_k`` (below `MIN_CANDIDATES`) compiles
    nothing new. ``engine``: an `Engine` of ``lm`` with other options than `default_engine(lm)`'s.
    """
    check_count(n, "n")
    check_count(max_new_tokens, "max_new_tokens")
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k)
    sampling.check_vocab(lm.config.vocab_size)
    stop = stop_strings(stop)
    if engine is None:
        engine = default_engine(lm)
    elif engine.lm is not lm:
        raise ValueError("engine belongs to another language model")
    batch = engine.layout(engine.tokenize(prompts))
    engine.check_context(batch.longest_prompt, max_new_tokens)
    # The suffix capacity is bucketed (fewer programs) but never past the context.
    room = lm.config.max_position_embeddings - batch.longest_prompt
    capacity = min(bucket_length(max_new_tokens), room)
    state = engine.start(batch, n, capacity, seed)
    _, out = engine.extend(
        state, max_tokens=capacity, token_limit=max_new_tokens, sampling=sampling, stop=stop
    )
    new_tokens = engine.new_tokens(out, batch.num_prompts, n)
    finish, logprob = np.asarray(out.finish), np.asarray(out.logprob)
    results = []
    for b in range(batch.num_prompts):
        samples = []
        for j in range(n):
            ids = new_tokens[b][j]
            reason = Finish(int(finish[b, j]))
            text = engine.text_of(ids) if lm.tokenizer is not None else ""
            if reason == Finish.STOP:
                text = truncate_at_stop(text, stop)
            samples.append(Sample(text, ids, float(logprob[b, j]), FINISH_NAMES[reason]))
        results.append(samples)
    return results
