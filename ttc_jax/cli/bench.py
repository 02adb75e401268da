"""``ttc-bench``: benchmarks of this package against its baselines (not timed tests).

``ttc-bench search`` times beam search against best-of-N and batched against one-by-one.
``ttc-bench layers`` times a model's layers unrolled against scanned over stacked weights.
``ttc-bench sampling`` measures what top-p and top-k add to a decode step on a real checkpoint.
``ttc-bench decode`` samples N continuations of one prompt with our engine, with a plain JAX
decode loop and with transformers' ``generate``, same shape and same random weights, and
prints tokens/s, the ratios, KV bytes held and the share of the memory-bandwidth roofline.
Results are recorded in docs/benchmarks.md.

Every benchmark times one process's devices, so the joining flags of the multi-process
commands (``--coordinator_address``, ``--num_processes``, ``--process_id``,
``--distributed``) are refused in one line: run ``ttc-bench`` on one host (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

DECODE_HELP = """\
Samples N continuations of one prompt (256 new tokens, EOS off) with our engine, with a plain
JAX decode loop (prompt KV copied per sample, whole-cache attention) and with transformers'
generate, on the same random weights; prints tokens/s, the ratios, KV bytes held and the
share of the memory-bandwidth roofline.

Cells. On a GPU the default is every N in --samples x every prompt length in
--prompt-lengths, all three implementations, Llama-3.2-1B shape in bfloat16, best of 3
(transformers: one timed call, it is 30-100x slower). On a CPU the default is a quick grid
(15-20 minutes on two cores), SmolLM2-135M shape in float32, 1 repeat: N=16 x prompt 256
with all three, N=64 x prompt 256 and N=64 x prompt 1536 ours only. Giving --samples,
--prompt-lengths or --full-grid on a CPU runs the full cross product (transformers included
unless --skip-transformers: hours on a CPU at N=256). With --json the report is rewritten
after every cell, so a run cut short keeps what it finished.

Real weights. --model gemma3-270m (or smollm2, or --checkpoint PATH) loads one real checkpoint
into our engine and into transformers (which dequantises the same GGUF file) instead of random
weights of a shape; the plain loop, which ignores sliding windows, is skipped in cells whose
sequences outgrow the model's window.
"""


SAMPLING_HELP = (
    "Decodes four chat prompts with plain temperature-0.8 sampling, with top-p 0.95 and with "
    "top-k 50 through the engine's step-wise API, and prints milliseconds per decode step, "
    "the ratio to plain sampling and the programs each setting compiled; then checks that a "
    "second temperature compiles nothing."
)


SEARCH_HELP = (
    "Runs best-of-N (N) and beam search (N, M), or the strategies --strategies names (DVTS, "
    "lookahead too), on the same MATH-500 questions, all questions in one call and one "
    "question per call (--per-call), each timed after a warm-up call of the same shapes; "
    "prints wall time per generated token (PRM included), verifier tokens per generated "
    "token, lane and KV-slot utilisation and where the time goes."
)


# --model's real checkpoints: how to find each one's file.
DECODE_MODELS = {
    "gemma3-270m": "gemma3_270m_path",
    "smollm2": "smollm2_path",
}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _cell_list(text: str) -> list[tuple[int, int]]:
    """ "16x256,256x1536" -> [(16, 256), (256, 1536)]: (samples, prompt tokens) pairs."""
    cells = []
    for item in text.split(","):
        try:
            samples, prompt_len = (int(v) for v in item.strip().split("x"))
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"expected cells like 16x256,256x1536 (samples x prompt tokens), got {item!r}"
            ) from e
        if samples < 1 or prompt_len < 1:
            raise argparse.ArgumentTypeError(f"cells need positive sizes, got {item!r}")
        cells.append((samples, prompt_len))
    return cells


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttc-bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser(
        "decode",
        help="our sampler vs transformers' generate (tokens/s, KV bytes, roofline)",
        description=DECODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument(
        "--shape",
        choices=["smollm2", "llama3.2-1b"],
        help="model shape, random weights (default: llama3.2-1b on a GPU, smollm2 on a CPU)",
    )
    decode.add_argument(
        "--model",
        choices=sorted(DECODE_MODELS),
        help="a real installed checkpoint instead of random weights (our engine and "
        "transformers both load its GGUF file)",
    )
    decode.add_argument(
        "--checkpoint",
        type=Path,
        help="a real HF folder or GGUF file instead of random weights (both sides load it)",
    )
    decode.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        help="our weights and cache (default: bfloat16 on a GPU, float32 on a CPU); "
        "transformers computes in float32 on a CPU whatever this is",
    )
    decode.add_argument(
        "--samples", type=_int_list, help="N values, comma-separated (grid: 16,64,256)"
    )
    decode.add_argument(
        "--prompt-lengths", type=_int_list, help="prompt tokens, comma-separated (grid: 256,1536)"
    )
    decode.add_argument(
        "--cells",
        type=_cell_list,
        help="exactly these N x prompt cells, e.g. 16x256,256x1536 (instead of a grid)",
    )
    decode.add_argument("--new-tokens", type=int, default=256, help="tokens per sample")
    decode.add_argument(
        "--full-grid", action="store_true", help="on a CPU, run the full grid (see above)"
    )
    decode.add_argument(
        "--skip-transformers", action="store_true", help="do not time transformers' generate"
    )
    decode.add_argument(
        "--skip-plain-loop", action="store_true", help="do not time the plain JAX loop"
    )
    decode.add_argument(
        "--attention",
        choices=["xla", "pallas"],
        default="xla",
        help="our engine's attention: XLA einsums (any backend) or the fused Pallas kernel "
        "(GPU; on a CPU it runs interpreted, for checking, not timing)",
    )
    decode.add_argument(
        "--repeats", type=int, help="timed calls per cell, best kept (default: 3 GPU, 1 CPU)"
    )
    decode.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="trace one more call of ours per cell into DIR (see ttc-bench trace-summary)",
    )
    decode.add_argument("--json", type=Path, help="also write the full report here")
    summary = commands.add_parser(
        "trace-summary",
        help="device time by kernel of a trace written by --profile",
        description="Totals the device events (GPU kernels, copies) of a *.trace.json.gz by "
        "name, largest first.",
    )
    summary.add_argument("trace", type=Path, help="a *.trace.json.gz file")
    summary.add_argument("--top", type=int, default=25, help="rows to print")
    summary.add_argument(
        "--program",
        help="only the kernels of this compiled program (the decode loop is jit_extend)",
    )
    summary.add_argument(
        "--steps", type=int, help="also print time and count per step, over this many steps"
    )
    goals = commands.add_parser(
        "goals",
        help="check decode reports against the engine's GPU goals",
        description="Reads ttc-bench decode --json reports and checks their goal cells: "
        ">= 70%% of roofline and faster than the plain loop at prompt 256 (N = 16, 64, 256), "
        ">= 2x the plain loop at prompt 1536, N = 256. A report without plain-loop figures "
        "borrows them from another report of the same device, shape, dtype and cell.",
    )
    goals.add_argument("reports", type=Path, nargs="+", help="decode report JSON files")
    sampling = commands.add_parser(
        "sampling",
        help="what top-p and top-k cost over plain temperature sampling (ms per decode step)",
        description=SAMPLING_HELP,
    )
    sampling.add_argument(
        "--checkpoint", type=Path, help="HF folder or GGUF file (default: SmolLM2-135M-Instruct)"
    )
    sampling.add_argument("--samples", type=int, default=16, help="samples per prompt")
    sampling.add_argument("--new-tokens", type=int, default=64, help="tokens per sample")
    sampling.add_argument("--repeats", type=int, default=2, help="timed calls per setting")
    sampling.add_argument("--json", type=Path, help="also write the report here")
    search = commands.add_parser(
        "search",
        help="beam search against best-of-N: time per generated token, utilisation, batching",
        description=SEARCH_HELP,
    )
    search.add_argument(
        "--policy", type=Path, help="HF folder or GGUF file (default: SmolLM2-135M-Instruct)"
    )
    search.add_argument(
        "--prm", type=Path, help="PRM folder (default: a small random ttc_value PRM)"
    )
    search.add_argument("--prm-kind", default="ttc_value", help="the PRM's kind")
    search.add_argument("--questions", type=int, default=16, help="MATH-500 questions")
    search.add_argument("--budget", type=int, default=16, help="N")
    search.add_argument("--beam-width", type=int, default=4, help="M")
    search.add_argument("--max-new-tokens", type=int, default=96, help="tokens per candidate")
    search.add_argument(
        "--strategies",
        default="best_of_n,beam",
        help="comma-separated: best_of_n, beam, dvts, lookahead (default: best_of_n,beam)",
    )
    search.add_argument("--lookahead-steps", type=int, default=1, help="k of lookahead")
    search.add_argument(
        "--per-call",
        default="all,1",
        help="questions searched at a time (max_rows = this x N; a tree search's pool, "
        "other strategies' batches), comma-separated: 'all' or a count (default: all,1)",
    )
    search.add_argument(
        "--prompt-style", choices=["plain", "chat"], default="chat", help="policy prompt"
    )
    search.add_argument("--json", type=Path, help="also write the report here")
    layers = commands.add_parser(
        "layers",
        help="a model's layers unrolled (as the engine runs them) against scanned: compile "
        "and run time",
        description="Runs a decode-shaped program (--steps one-token steps for --rows rows) "
        "with the layers unrolled and with one layer scanned over stacked weights, and prints "
        "trace, compile and per-step time and how far the scanned result is from the unrolled.",
    )
    layers.add_argument(
        "--checkpoint", type=Path, help="HF folder or GGUF file (default: SmolLM2-135M-Instruct)"
    )
    layers.add_argument("--rows", type=int, default=64, help="rows decoded together")
    layers.add_argument("--steps", type=int, default=32, help="steps in the program's loop")
    layers.add_argument("--repeats", type=int, default=3, help="timed calls, best kept")
    layers.add_argument("--json", type=Path, help="also write the report here")
    return parser


def decode_checkpoint(args: argparse.Namespace) -> Path | None:
    """The real checkpoint --model or --checkpoint names (None: random weights); exits with
    one line when the options clash or the model is not installed."""
    given = [
        flag
        for flag, value in (
            ("--model", args.model),
            ("--checkpoint", args.checkpoint),
            ("--shape", args.shape),
        )
        if value is not None
    ]
    if len(given) > 1:
        sys.exit(f"ttc-bench decode: {' and '.join(given)} exclude each other")
    if args.checkpoint is not None:
        if not args.checkpoint.exists():
            sys.exit(f"ttc-bench decode: no checkpoint at {args.checkpoint}")
        return args.checkpoint
    if args.model is None:
        return None
    import ttc_jax

    try:
        return getattr(ttc_jax, DECODE_MODELS[args.model])()
    except FileNotFoundError as e:
        sys.exit(f"ttc-bench decode: {e}")


def run_decode(args: argparse.Namespace) -> None:
    checkpoint = decode_checkpoint(args)

    import jax

    from ttc_jax.bench import decode, reference
    from ttc_jax.bench.shapes import SHAPES

    on_gpu = jax.default_backend() != "cpu"
    shape = args.shape or ("llama3.2-1b" if on_gpu else "smollm2")
    dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    repeats = args.repeats or (3 if on_gpu else 1)
    explicit_grid = args.full_grid or args.samples or args.prompt_lengths
    if args.cells:
        cells = [decode.Cell(samples, prompt_len) for samples, prompt_len in args.cells]
    elif on_gpu or explicit_grid:
        cells = decode.grid(
            args.samples or [16, 64, 256], args.prompt_lengths or [256, 1536], transformers=True
        )
    else:
        cells = list(decode.QUICK_CPU_CELLS)
    if args.skip_transformers:
        cells = [dataclasses.replace(cell, transformers=False) for cell in cells]
    if args.skip_plain_loop:
        cells = [dataclasses.replace(cell, plain_loop=False) for cell in cells]

    def save(report: decode.DecodeReport) -> None:
        if args.json:
            args.json.write_text(json.dumps(report.to_json_dict(), indent=2) + "\n")

    models = None
    weights = "random weights"
    if checkpoint is not None:
        print(f"loading {checkpoint.name} (ours and transformers')", file=sys.stderr, flush=True)
        models = reference.checkpoint_models(checkpoint, dtype)
        shape = checkpoint.name
        weights = "real weights"
    report = decode.run_decode_benchmark(
        SHAPES[shape] if models is None else models[0].config,
        dtype,
        cells,
        new_tokens=args.new_tokens,
        repeats=repeats,
        shape_name=shape,
        models=models,
        transformers_repeats=1 if on_gpu else None,
        attention=args.attention,
        profile_dir=args.profile,
        log=lambda message: print(message, file=sys.stderr, flush=True),
        on_cell=save,
    )
    print(
        f"ttc-bench decode: {report.shape} ({report.dtype}, {report.attention} attention), "
        f"{weights}, "
        f"{args.new_tokens} new tokens, best of {repeats}; {report.device}; {report.date}"
    )
    print(
        f"copy bandwidth {report.bandwidth_bytes_per_s / 1e9:.1f} GB/s; weights read per step "
        f"{report.weight_bytes_per_step / 2**20:,.0f} MiB; KV {report.kv_bytes_per_token:,} "
        f"bytes/token; greedy agreement {report.parity.greedy_agreement:.2f} over "
        f"{report.parity.positions} positions (max logit diff {report.parity.max_logit_diff:.1e}); "
        f"host load {report.host_load[0]:.1f} -> {report.host_load[1]:.1f}"
    )
    print(decode.format_table(report))


def run_sampling(args: argparse.Namespace) -> None:
    import ttc_jax
    from ttc_jax.bench import sampling
    from ttc_jax.smollm2 import smollm2_path

    path = args.checkpoint or smollm2_path()
    report = sampling.run_sampling_benchmark(
        ttc_jax.load_lm(path), path.name, args.samples, args.new_tokens, args.repeats
    )
    print(sampling.format_report(report))
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")


def run_search(args: argparse.Namespace) -> None:
    import datetime

    import ttc_jax
    from ttc_jax.bench import search
    from ttc_jax.math import load_math500

    try:
        cells = search.strategy_cells(
            args.strategies.split(","),
            args.budget,
            args.beam_width,
            args.max_new_tokens,
            args.prompt_style,
            args.questions,
            args.per_call.split(","),
            args.lookahead_steps,
        )
    except ValueError as e:
        sys.exit(f"ttc-bench search: {e}")
    policy_path = args.policy or ttc_jax.smollm2_path()
    policy = ttc_jax.load_lm(policy_path)
    if args.prm is not None:
        prm = ttc_jax.load_prm(args.prm, args.prm_kind)
        prm_name = str(args.prm)
    else:
        prm = ttc_jax.PRM.random(
            search.SMALL_PRM.replace(vocab_size=policy.config.vocab_size),
            "ttc_value",
            policy.tokenizer,
        )
        prm_name = "random ttc_value PRM (2 layers, width 64)"
    problems = load_math500()[: args.questions]
    print(
        f"policy {policy_path.name}; PRM {prm_name}; {args.questions} MATH-500 questions; "
        f"max_new_tokens {args.max_new_tokens}"
    )
    print(search.format_header())
    measured = search.run_search_benchmark(cells, policy, prm, problems)
    if args.json:
        report = search.SearchReport(
            policy_path.name,
            prm_name,
            args.questions,
            args.max_new_tokens,
            datetime.date.today().isoformat(),
            measured,
        )
        args.json.write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")


def run_layers(args: argparse.Namespace) -> None:
    import datetime

    import jax

    import ttc_jax
    from ttc_jax.bench import layer_scan

    path = args.checkpoint or ttc_jax.smollm2_path()
    lm = ttc_jax.load_lm(path)
    try:
        costs = layer_scan.measure_layer_scan(lm, args.rows, args.steps, args.repeats)
    except ValueError as e:
        sys.exit(f"ttc-bench layers: {e}")
    device = jax.devices()[0].device_kind
    print(
        f"{path.name} ({lm.config.num_layers} layers); {args.rows} rows x {args.steps} steps, "
        f"best of {args.repeats}; {device}; {datetime.date.today().isoformat()}"
    )
    print(layer_scan.format_layer_scan(costs))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(c) for c in costs], indent=2) + "\n")


JOINING_FLAGS = ("--coordinator_address", "--num_processes", "--process_id", "--distributed")


def refuse_joining(argv: list[str]) -> None:
    """Exits in one line if ``argv`` holds a joining flag (see the module docstring)."""
    given = [arg.split("=", 1)[0] for arg in argv if arg.split("=", 1)[0] in JOINING_FLAGS]
    if given:
        sys.exit(
            f"ttc-bench: a benchmark times one process's devices; {', '.join(given)} is for "
            "ttc-study and ttc-train (run ttc-bench on one host)"
        )


def main(argv: list[str] | None = None) -> None:
    refuse_joining(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # JAX would otherwise reserve most of the GPU at start-up, leaving torch nothing.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.command == "decode":
        run_decode(args)
    elif args.command == "trace-summary":
        from ttc_jax.bench import profile

        if args.steps is not None and args.steps < 1:
            sys.exit(f"ttc-bench trace-summary: --steps must be at least 1, got {args.steps}")
        try:
            summary = profile.summarize(args.trace, args.top, args.program)
            print(profile.format_summary(summary, args.steps))
        except (OSError, ValueError) as e:
            sys.exit(f"ttc-bench trace-summary: {e}")
    elif args.command == "sampling":
        run_sampling(args)
    elif args.command == "search":
        run_search(args)
    elif args.command == "layers":
        run_layers(args)
    elif args.command == "goals":
        from ttc_jax.bench import goals

        try:
            reports = goals.load_reports(args.reports)
        except (OSError, ValueError) as e:
            sys.exit(f"ttc-bench goals: {e}")
        print(goals.format_checks(goals.check_goals(reports)))


if __name__ == "__main__":
    main()
