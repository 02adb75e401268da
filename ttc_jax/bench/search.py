"""Search benchmark: beam search against best-of-N on the same questions, what each generated
token costs, where the time goes, and whether batching questions pays.

Each cell runs one strategy over the questions twice with the same seed: a warm-up call that
compiles its programs, then the timed call (same shapes, so nothing compiles). Reported per
cell: wall time per generated token (the policy's decode tokens, PRM scoring included),
verifier tokens per generated token, the lane utilisation (generated tokens per sample row
computed in a decode step: what the search wastes), the KV-slot utilisation of the decode
steps (of the suffix slots live samples read, the share holding their tokens), the calls that
reach the host (decode loop and PRM), and the split of the wall time into policy decoding, PRM
scoring, selection and the host's own work. Each strategy runs with all
questions in one call and with one question per call (`strategy_cells` chooses).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from ttc_jax.lm import LanguageModel
from ttc_jax.math.datasets import Problem
from ttc_jax.models.config import ModelConfig
from ttc_jax.prm import PRM
from ttc_jax.search import run, strategy_config
from ttc_jax.search.results import BatchStats

# The default verifier: cheap next to the policy, so the benchmark measures search, not a PRM.
SMALL_PRM = ModelConfig(
    vocab_size=1,  # replaced by the policy tokenizer's vocabulary
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    intermediate_size=128,
    max_position_embeddings=4096,
)


@dataclasses.dataclass(frozen=True)
class SearchCell:
    strategy: str
    budget: int
    questions_per_call: int
    wall_s: float
    cpu_s: float  # this process's CPU time: steadier than wall time on a shared machine
    generated_tokens: int
    verifier_tokens: int
    prefill_tokens: int
    ms_per_generated_token: float
    cpu_ms_per_generated_token: float
    verifier_per_generated: float
    lane_utilisation: float
    kv_slot_utilisation: float
    rounds: int
    device_calls: int
    verifier_calls: int
    decode_steps: int
    lane_steps: int
    decode_s: float
    verify_s: float
    select_s: float
    host_s: float
    accuracy: float | None
    timed_compiles: int


@dataclasses.dataclass(frozen=True)
class SearchReport:
    policy: str
    prm: str
    questions: int
    max_new_tokens: int
    date: str
    cells: list[SearchCell]


def measure(
    strategy,
    policy: LanguageModel,
    prm: PRM,
    problems: Sequence[Problem],
    budget: int,
    questions_per_call: int,
    seed: int = 0,
) -> SearchCell:
    def call(stats: list[BatchStats]):
        return run(
            strategy,
            policy,
            prm,
            problems,
            budget,
            seed,
            max_rows=questions_per_call * budget,
            on_batch=stats.append,
        )

    call([])  # compiles
    stats: list[BatchStats] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    results = call(stats)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    generated = sum(r.accounting.policy_decode_tokens for r in results)
    verifier = sum(r.accounting.verifier_tokens for r in results)
    steps = sum(s.decode_steps for s in stats)
    graded = [r.correct for r in results if r.correct is not None]
    return SearchCell(
        strategy=_label(strategy, budget),
        budget=budget,
        questions_per_call=questions_per_call,
        wall_s=wall_s,
        cpu_s=cpu_s,
        generated_tokens=generated,
        verifier_tokens=verifier,
        prefill_tokens=sum(r.accounting.policy_prefill_tokens for r in results),
        ms_per_generated_token=1e3 * wall_s / max(1, generated),
        cpu_ms_per_generated_token=1e3 * cpu_s / max(1, generated),
        verifier_per_generated=verifier / max(1, generated),
        lane_utilisation=sum(s.generated_tokens for s in stats)
        / max(1, sum(s.lane_steps for s in stats)),
        kv_slot_utilisation=sum(s.kv_slot_utilisation * s.decode_steps for s in stats)
        / max(1, steps),
        rounds=sum(s.rounds for s in stats),
        device_calls=sum(s.device_calls for s in stats),
        verifier_calls=sum(s.verifier_calls for s in stats),
        decode_steps=steps,
        lane_steps=sum(s.lane_steps for s in stats),
        decode_s=sum(s.decode_s for s in stats),
        verify_s=sum(s.verify_s for s in stats),
        select_s=sum(s.select_s for s in stats),
        host_s=sum(s.host_s for s in stats),
        accuracy=sum(graded) / len(graded) if graded else None,
        timed_compiles=sum(s.programs_compiled for s in stats),
    )


# The strategies a cell can measure, and how many questions a call takes ("all" or a count).
BENCHMARKED = ("best_of_n", "beam", "dvts", "lookahead")


def strategy_cells(
    names: Sequence[str],
    budget: int,
    beam_width: int,
    max_new_tokens: int,
    prompt_style: str,
    questions: int,
    per_call: Sequence[str | int],
    lookahead_steps: int = 1,
) -> list[tuple]:
    """(strategy config, budget, questions per call) cells: every strategy of ``names`` at
    each of ``per_call`` ("all": every question in one call), in that order. Raises
    ValueError naming a strategy or a per-call count that cannot be measured."""
    unknown = [name for name in names if name not in BENCHMARKED]
    if unknown or not names:
        raise ValueError(f"strategies must be some of {', '.join(BENCHMARKED)}, got {unknown}")
    counts = []
    for value in per_call:
        count = questions if value == "all" else value
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        if not isinstance(count, int) or not 1 <= count <= questions:
            raise ValueError(f"questions per call must be 'all' or 1-{questions}, got {value!r}")
        counts.append(count)
    configs = []
    for name in names:
        config = strategy_config(name)
        config.max_new_tokens = max_new_tokens
        config.prompt.style = prompt_style
        if name in ("beam", "dvts", "lookahead"):
            config.beam_width = beam_width
        if name == "lookahead":
            config.lookahead_steps = lookahead_steps
        configs.append(config)
    return [(config, budget, count) for count in counts for config in configs]


def _label(strategy, budget: int) -> str:
    if strategy.name in ("beam", "lookahead", "dvts"):
        return f"{strategy.name} N={budget} M={strategy.beam_width}"
    return f"{strategy.name} N={budget}"


def run_search_benchmark(
    cells: Sequence[tuple],
    policy: LanguageModel,
    prm: PRM,
    problems: Sequence[Problem],
    log: Callable[[str], None] = print,
) -> list[SearchCell]:
    """``cells``: (strategy config, budget, questions per call) triples, measured in order."""
    measured = []
    for strategy, budget, per_call in cells:
        cell = measure(strategy, policy, prm, problems, budget, per_call)
        log(format_cell(cell))
        measured.append(cell)
    return measured


def format_header() -> str:
    return (
        f"{'strategy':<18}{'q/call':>7}{'wall s':>8}{'gen tok':>9}{'ms/tok':>8}{'cpu ms':>8}"
        f"{'ver/gen':>8}{'lanes':>6}{'kv':>5}{'calls':>6}{'prm':>5}{'steps':>7}{'decode':>8}"
        f"{'verify':>8}{'select':>8}{'host':>7}{'acc':>6}"
    )


def format_cell(cell: SearchCell) -> str:
    accuracy = "-" if cell.accuracy is None else f"{cell.accuracy:.2f}"
    return (
        f"{cell.strategy:<18}{cell.questions_per_call:>7}{cell.wall_s:>8.1f}"
        f"{cell.generated_tokens:>9}{cell.ms_per_generated_token:>8.2f}"
        f"{cell.cpu_ms_per_generated_token:>8.2f}"
        f"{cell.verifier_per_generated:>8.2f}{cell.lane_utilisation:>6.2f}"
        f"{cell.kv_slot_utilisation:>5.2f}{cell.device_calls:>6}{cell.verifier_calls:>5}"
        f"{cell.decode_steps:>7}{cell.decode_s:>8.1f}{cell.verify_s:>8.1f}{cell.select_s:>8.1f}"
        f"{cell.host_s:>7.1f}{accuracy:>6}"
    )
