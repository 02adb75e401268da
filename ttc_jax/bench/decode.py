"""Decode benchmark: our sampler against transformers' ``generate`` and against a plain JAX
decode loop (`ttc_jax.bench.plain_loop`), same weights, same shape.

Every cell samples N continuations of one prompt, ``new_tokens`` tokens each (EOS is off, so
no sample stops early), with plain temperature-1 sampling. Reported per implementation:
tokens per second of the whole call (prefill included, as a user sees it), the KV bytes the
cache holds, and the share of the memory-bandwidth roofline of its own cache layout (see
`ttc_jax.bench.roofline`). The JAX implementations are timed after a warm-up call of the same
size that compiles their programs; ours reports the warm-up's compile time and program count.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import torch
import transformers

import ttc_jax
from ttc_jax.bench import plain_loop, profile, reference, roofline
from ttc_jax.bucketing import bucket_length
from ttc_jax.engine import Engine
from ttc_jax.lm import LanguageModel
from ttc_jax.models.config import ModelConfig
from ttc_jax.program_cache import CompileLog


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: N samples of a prompt of ``prompt_len`` tokens."""

    samples: int
    prompt_len: int
    transformers: bool = True  # also time transformers' generate here
    plain_loop: bool = True  # also time the plain JAX loop here


def grid(
    samples: Sequence[int],
    prompt_lengths: Sequence[int],
    transformers: bool,
    plain_loop: bool = True,
) -> list[Cell]:
    return [Cell(n, p, transformers, plain_loop) for p in prompt_lengths for n in samples]


# What two CPU cores finish in 15-20 minutes: the other implementations only at N=16
# (transformers' N=64 alone would take most of the budget), and the long prompt at N=64
# (N=256 x 1536 alone takes 14 minutes here: 2 s a step of weight and prompt-attention
# arithmetic).
QUICK_CPU_CELLS = (
    Cell(16, 256, transformers=True, plain_loop=True),
    Cell(64, 256, transformers=False, plain_loop=False),
    Cell(64, 1536, transformers=False, plain_loop=False),
)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One implementation in one cell. Times in seconds."""

    tokens_per_s: float  # samples * new_tokens / best timed call
    seconds: float  # best timed call
    kv_bytes: int  # key/value bytes the cache holds at the end
    roofline_tokens_per_s: float  # for this implementation's cache layout
    roofline_fraction: float
    warmup_s: float  # the untimed first call (ours: includes compiling)
    compile_s: float | None = None  # ours: tracing + lowering + XLA compiling in the warm-up
    programs_compiled: int | None = None  # ours: XLA programs the warm-up compiled
    timed_compiles: int | None = None  # ours: programs compiled in timed calls (should be 0)
    prefill_s: float | None = None  # ours: the prompt's prefill alone


@dataclasses.dataclass(frozen=True)
class CellReport:
    samples: int
    prompt_len: int
    new_tokens: int
    ours: Measurement
    transformers: Measurement | None
    ratio: float | None  # ours / transformers tokens per second
    plain_loop: Measurement | None = None
    plain_loop_ratio: float | None = None  # ours / plain loop tokens per second


@dataclasses.dataclass(frozen=True)
class DecodeReport:
    shape: str
    dtype: str
    attention: str  # our engine's attention implementation
    device: str
    date: str
    versions: dict[str, str]
    bandwidth_bytes_per_s: float  # measured copy bandwidth (read + write)
    weight_bytes_per_step: int
    kv_bytes_per_token: int
    parity: reference.Parity
    cells: list[CellReport]
    # 1-minute load average of the host before and after: other work on a shared machine
    # (anything above the benchmark's own ~1-2) slows both implementations.
    host_load: tuple[float, float]

    def to_json_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sample_ours(engine: Engine, prompt, samples: int, new_tokens: int, seed: int) -> float:
    start = time.perf_counter()
    results = ttc_jax.generate(
        engine.lm, [prompt], n=samples, max_new_tokens=new_tokens, seed=seed, engine=engine
    )
    seconds = time.perf_counter() - start
    lengths = {len(sample.token_ids) for sample in results[0]}
    if lengths != {new_tokens}:
        raise AssertionError(f"samples stopped early (lengths {sorted(lengths)}); is EOS off?")
    return seconds


def measure_ours(
    engine: Engine, prompt, samples: int, new_tokens: int, repeats: int, bandwidth: float
) -> Measurement:
    # The warm-up has the timed calls' size: the suffix grows in stages, each its own program.
    with CompileLog() as warmup_compiles:
        warmup_s = _sample_ours(engine, prompt, samples, new_tokens, seed=0)
    with CompileLog() as timed_compiles:
        best = min(
            _sample_ours(engine, prompt, samples, new_tokens, seed=r + 1) for r in range(repeats)
        )
    # The prefill alone, through the same compiled program `generate` ran. Its cache, grown to
    # the bucketed budget as `generate`'s was by the end, tells the bytes held.
    lm = engine.lm
    batch = engine.layout(engine.tokenize([prompt]))
    capacity = bucket_length(new_tokens)
    start = time.perf_counter()
    state = jax.block_until_ready(engine.start(batch, samples, capacity, 0))
    prefill_s = time.perf_counter() - start
    kv_bytes = sum(state.cache.kv_bytes(capacity=capacity).values())
    return _measurement(
        lm,
        samples,
        len(prompt),
        new_tokens,
        best,
        kv_bytes,
        bandwidth,
        shared_prompt=True,
        warmup_s=warmup_s,
        compile_s=warmup_compiles.seconds,
        programs_compiled=warmup_compiles.programs,
        timed_compiles=timed_compiles.programs,
        prefill_s=prefill_s,
    )


def measure_plain_loop(
    lm: LanguageModel, prompt, samples: int, new_tokens: int, repeats: int, bandwidth: float
) -> Measurement:
    def timed(seed: int) -> float:
        start = time.perf_counter()
        plain_loop.plain_loop_sample(lm, prompt, samples, new_tokens, seed)
        return time.perf_counter() - start

    warmup_s = timed(0)
    best = min(timed(r + 1) for r in range(repeats))
    kv_bytes = plain_loop.plain_loop_kv_bytes(lm.config, lm.dtype, samples, len(prompt), new_tokens)
    return _measurement(
        lm,
        samples,
        len(prompt),
        new_tokens,
        best,
        kv_bytes,
        bandwidth,
        shared_prompt=False,
        warmup_s=warmup_s,
    )


def measure_transformers(
    lm: LanguageModel, model, prompt, samples: int, new_tokens: int, repeats: int, bandwidth
) -> Measurement:
    # Two tokens warm the kernels and the allocator; torch compiles nothing here.
    warmup = reference.sample_with_transformers(model, prompt, samples, 2, seed=0)
    runs = [
        reference.sample_with_transformers(model, prompt, samples, new_tokens, seed=r + 1)
        for r in range(repeats)
    ]
    best = min(runs, key=lambda run: run.seconds)
    return _measurement(
        lm,
        samples,
        len(prompt),
        new_tokens,
        best.seconds,
        best.kv_bytes,
        bandwidth,
        shared_prompt=False,
        warmup_s=warmup.seconds,
    )


def _measurement(
    lm, samples, prompt_len, new_tokens, seconds, kv_bytes, bandwidth, shared_prompt, **extra
) -> Measurement:
    ceiling = roofline.roofline_tokens_per_s(
        lm.config, lm.dtype, samples, prompt_len, new_tokens, bandwidth, shared_prompt
    )
    tokens_per_s = samples * new_tokens / seconds
    return Measurement(
        tokens_per_s=tokens_per_s,
        seconds=seconds,
        kv_bytes=kv_bytes,
        roofline_tokens_per_s=ceiling,
        roofline_fraction=tokens_per_s / ceiling,
        **extra,
    )


def random_prompt(cfg: ModelConfig, length: int, seed: int) -> list[int]:
    """Token ids standing in for a real prompt: with random weights only the length matters."""
    return np.random.default_rng(seed).integers(0, cfg.vocab_size, length).tolist()


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"CPU, {os.cpu_count()} cores"
    return f"{device.device_kind} (x{jax.device_count()})"


def run_decode_benchmark(
    cfg: ModelConfig,
    dtype: str,
    cells: Sequence[Cell],
    new_tokens: int = 256,
    repeats: int = 1,
    shape_name: str = "custom",
    copy_bytes: int = roofline.DEFAULT_COPY_BYTES,
    parity_tokens: int = 32,
    transformers_repeats: int | None = None,
    attention: str = "xla",
    profile_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    on_cell: Callable[[DecodeReport], None] = lambda report: None,
    models: tuple[LanguageModel, torch.nn.Module] | None = None,
) -> DecodeReport:
    """Builds both models once, checks they agree, then measures every cell.

    ``on_cell`` gets the report of the cells measured so far after each cell, so that a long
    run that is cut short still leaves its finished cells behind. ``transformers_repeats``
    (default ``repeats``) times transformers' calls, which on a GPU are slow enough that one
    run says all there is to say. ``attention`` is our engine's (`ttc_jax.engine.Engine`).
    With ``profile_dir``, one more call of ours per cell runs under the profiler and leaves
    its trace there (`ttc_jax.bench.profile`). ``models`` (ours and transformers', from
    `reference.checkpoint_models`) replaces the random weights of ``cfg``'s shape with a real
    checkpoint's; the plain loop, which attends to its whole cache, is skipped in cells whose
    sequences would outgrow the model's sliding window.
    """
    load_before = os.getloadavg()[0]
    log("measuring copy bandwidth")
    bandwidth = roofline.copy_bandwidth(copy_bytes)
    if models is None:
        log(f"  {bandwidth / 1e9:.1f} GB/s; building random {shape_name} weights ({dtype})")
        lm, model = reference.random_models(cfg, dtype)
    else:
        log(f"  {bandwidth / 1e9:.1f} GB/s; {shape_name} ({dtype})")
        lm, model = models
        cfg = lm.config
    parity = reference.greedy_parity(lm, model, random_prompt(cfg, parity_tokens, seed=1))
    log(f"  parity: {parity}")
    engine = Engine(lm, attention=attention)
    report = DecodeReport(
        shape=shape_name,
        dtype=dtype,
        attention=attention,
        device=device_name(),
        date=datetime.date.today().isoformat(),
        versions={
            "jax": jax.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        bandwidth_bytes_per_s=bandwidth,
        weight_bytes_per_step=roofline.weight_bytes_per_step(cfg, dtype),
        kv_bytes_per_token=roofline.kv_bytes_per_token(cfg, dtype),
        parity=parity,
        cells=[],
        host_load=(load_before, load_before),
    )
    for cell in cells:
        prompt = random_prompt(cfg, cell.prompt_len, seed=cell.prompt_len)
        where = f"N={cell.samples} prompt={cell.prompt_len}"
        log(f"{where}: ours")
        ours = measure_ours(engine, prompt, cell.samples, new_tokens, repeats, bandwidth)
        log(f"  {ours.tokens_per_s:,.0f} tok/s")
        if profile_dir is not None:
            name = f"ours_{attention}_N{cell.samples}_P{cell.prompt_len}"
            traced_call = functools.partial(
                _sample_ours, engine, prompt, cell.samples, new_tokens, seed=repeats + 1
            )
            profile.capture(traced_call, profile_dir, name)
            log(f"  traced: {profile_dir / name}.*")
        plain = theirs = None
        plain_loop_exact = cfg.sliding_window is None or (
            cell.prompt_len + new_tokens <= cfg.sliding_window
        )
        if cell.plain_loop and not plain_loop_exact:
            log(f"{where}: plain loop skipped (it ignores the sliding window)")
        if cell.plain_loop and plain_loop_exact:
            log(f"{where}: plain loop")
            plain = measure_plain_loop(lm, prompt, cell.samples, new_tokens, repeats, bandwidth)
            log(f"  {plain.tokens_per_s:,.0f} tok/s")
        if cell.transformers:
            log(f"{where}: transformers")
            theirs = measure_transformers(
                lm,
                model,
                prompt,
                cell.samples,
                new_tokens,
                transformers_repeats or repeats,
                bandwidth,
            )
            log(f"  {theirs.tokens_per_s:,.0f} tok/s")
        cell_report = CellReport(
            cell.samples,
            cell.prompt_len,
            new_tokens,
            ours,
            theirs,
            ratio=None if theirs is None else ours.tokens_per_s / theirs.tokens_per_s,
            plain_loop=plain,
            plain_loop_ratio=None if plain is None else ours.tokens_per_s / plain.tokens_per_s,
        )
        report = dataclasses.replace(
            report,
            cells=[*report.cells, cell_report],
            host_load=(load_before, os.getloadavg()[0]),
        )
        on_cell(report)
    return report


def format_table(report: DecodeReport) -> str:
    """The cells as a Markdown table (tokens/s, ratios, KV held, roofline share, compile)."""

    def number(value, fmt="{:,.1f}", scale=1.0):
        return "-" if value is None else fmt.format(value * scale)

    def field(measurement, name, fmt="{:,.1f}", scale=1.0):
        return number(None if measurement is None else getattr(measurement, name), fmt, scale)

    header = (
        "| N | prompt | ours tok/s | plain loop tok/s | ours / plain | transformers tok/s | "
        "ours / transformers | ours KV MiB | plain KV MiB | transformers KV MiB | "
        "ours % roofline | plain % roofline | transformers % roofline | ours prefill s | "
        "ours compile s (programs) |"
    )
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    mib = 1 / 2**20
    for cell in report.cells:
        ours, plain, theirs = cell.ours, cell.plain_loop, cell.transformers
        columns = [
            str(cell.samples),
            str(cell.prompt_len),
            field(ours, "tokens_per_s"),
            field(plain, "tokens_per_s"),
            number(cell.plain_loop_ratio, "{:.2f}"),
            field(theirs, "tokens_per_s"),
            number(cell.ratio, "{:.2f}"),
            *(field(m, "kv_bytes", "{:,.0f}", mib) for m in (ours, plain, theirs)),
            *(field(m, "roofline_fraction", "{:.1f}", 100) for m in (ours, plain, theirs)),
            f"{ours.prefill_s:.2f}",
            f"{ours.compile_s:.1f} ({ours.programs_compiled})",
        ]
        rows.append("| " + " | ".join(columns) + " |")
    return "\n".join(rows)
