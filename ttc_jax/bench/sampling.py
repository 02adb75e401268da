"""Sampling-cost benchmark: what top-p and top-k add to a decode step over plain temperature
sampling, and whether new sampling values compile anything.

Runs on a real checkpoint (default: SmolLM2-135M-Instruct), since the cost of exact top-p
depends on how peaked the model's distributions are: a nucleus that fits in the pre-selected
candidates is cheap, one that does not takes the whole-vocabulary fallback. Every setting runs
the same prompts through the engine's step-wise API with the same seeds; the figure is
milliseconds per decode step (all samples advance together), so settings whose samples end
at different times still compare like for like.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax

from ttc_jax.engine import Engine, SamplingConfig
from ttc_jax.lm import LanguageModel
from ttc_jax.program_cache import CompileLog

QUESTIONS = (
    "What is 12 + 35?",
    "Solve for x: 3x - 7 = 11.",
    "How many prime numbers are there between 10 and 30?",
    "A rectangle has sides 4 and 9. What is its area?",
)
SETTINGS = {
    "temperature 0.8": SamplingConfig(temperature=0.8),
    "top-p 0.95": SamplingConfig(temperature=0.8, top_p=0.95),
    "top-k 50": SamplingConfig(temperature=0.8, top_k=50),
}


@dataclasses.dataclass(frozen=True)
class SettingCost:
    name: str
    ms_per_step: float  # wall time, best of the timed calls
    cpu_ms_per_step: float  # this process's CPU time (all threads), best of the timed calls
    steps: int
    tokens: int  # tokens generated in the best call
    ratio: float  # wall ms per step over plain temperature sampling's
    cpu_ratio: float  # CPU ms per step over plain temperature sampling's
    programs_compiled: int  # in the warm-up
    timed_compiles: int  # in the timed calls (should be 0)


@dataclasses.dataclass(frozen=True)
class SamplingReport:
    model: str
    prompts: int
    samples: int
    new_tokens: int
    settings: list[SettingCost]
    second_temperature_compiles: int  # programs compiled for a temperature not seen before


def chat_prompts(lm: LanguageModel, questions: Sequence[str]) -> list[str]:
    tokenizer = lm.tokenizer
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]


@dataclasses.dataclass(frozen=True)
class _Call:
    seconds: float
    cpu_seconds: float  # this process's CPU time: steadier than wall time on a shared machine
    steps: int
    tokens: int


def _timed_call(engine: Engine, batch, samples, new_tokens, sampling, seed) -> _Call:
    start, cpu_start = time.perf_counter(), time.process_time()
    state = engine.start(batch, samples, new_tokens, seed)
    _, out = engine.extend(state, max_tokens=new_tokens, token_limit=new_tokens, sampling=sampling)
    steps = int(out.steps)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return _Call(seconds, cpu_seconds, steps, int(jax.numpy.sum(out.count)))


def run_sampling_benchmark(
    lm: LanguageModel,
    model_name: str,
    samples: int = 16,
    new_tokens: int = 64,
    repeats: int = 2,
    questions: Sequence[str] = QUESTIONS,
) -> SamplingReport:
    engine = Engine(lm)
    batch = engine.layout(engine.tokenize(chat_prompts(lm, questions)))
    costs = []
    plain = None
    for name, sampling in SETTINGS.items():
        with CompileLog() as warmup:
            _timed_call(engine, batch, samples, new_tokens, sampling, seed=0)
        with CompileLog() as timed:
            runs = [
                _timed_call(engine, batch, samples, new_tokens, sampling, seed=r + 1)
                for r in range(repeats)
            ]
        ms = min(1e3 * run.seconds / run.steps for run in runs)
        cpu_ms = min(1e3 * run.cpu_seconds / run.steps for run in runs)
        plain = plain or (ms, cpu_ms)
        costs.append(
            SettingCost(
                name,
                ms,
                cpu_ms,
                runs[0].steps,
                runs[0].tokens,
                ms / plain[0],
                cpu_ms / plain[1],
                warmup.programs,
                timed.programs,
            )
        )
    with CompileLog() as second:
        _timed_call(engine, batch, samples, new_tokens, SamplingConfig(temperature=0.9), seed=9)
    return SamplingReport(model_name, len(questions), samples, new_tokens, costs, second.programs)


def format_report(report: SamplingReport) -> str:
    lines = [
        f"{report.model}: {report.prompts} prompts x {report.samples} samples x "
        f"{report.new_tokens} new tokens",
        f"{'setting':<18}{'ms/step':>9}{'x plain':>9}{'cpu ms/step':>13}{'x plain':>9}"
        f"{'steps':>7}{'tokens':>8}{'programs':>10}",
    ]
    for cost in report.settings:
        lines.append(
            f"{cost.name:<18}{cost.ms_per_step:>9.1f}{cost.ratio:>9.2f}"
            f"{cost.cpu_ms_per_step:>13.1f}{cost.cpu_ratio:>9.2f}{cost.steps:>7}"
            f"{cost.tokens:>8}{cost.programs_compiled:>10}"
        )
    lines.append(
        f"programs compiled for a second temperature (0.9): {report.second_temperature_compiles}"
    )
    return "\n".join(lines)
