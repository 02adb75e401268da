"""The decode benchmark runs end to end on a tiny shape and reports consistent numbers."""

import json

import pytest

from ttc_jax.bench import decode, roofline
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


@pytest.fixture(scope="module")
def report():
    return decode.run_decode_benchmark(
        TINY,
        "float32",
        [decode.Cell(SAMPLES, PROMPT_LEN)],
        new_tokens=NEW_TOKENS,
        shape_name="tiny",
        copy_bytes=1 << 24,
        parity_tokens=16,
    )


def test_report_has_both_implementations(report):
    (cell,) = report.cells
    assert cell.ours.tokens_per_s > 0 and cell.transformers.tokens_per_s > 0
    assert cell.ratio == pytest.approx(cell.ours.tokens_per_s / cell.transformers.tokens_per_s)
    assert report.parity.greedy_agreement == 1.0
    assert cell.ours.programs_compiled > 0 and cell.ours.timed_compiles == 0


def test_kv_bytes_count_the_prompt_once_for_ours(report):
    (cell,) = report.cells
    per_token = 2 * TINY.num_layers * TINY.num_kv_heads * TINY.head_dim * 4
    assert report.kv_bytes_per_token == per_token
    # Ours: the prompt minus its last token, padded to 16 slots, stored once, plus each
    # sample's suffix of 16 slots (the bucketed budget). transformers: every sample holds
    # its own copy of prompt and continuation, all but the last sampled token.
    assert cell.ours.kv_bytes == per_token * (16 + SAMPLES * 16)
    assert cell.transformers.kv_bytes == per_token * SAMPLES * (PROMPT_LEN + NEW_TOKENS - 1)


def test_roofline_fractions_are_plausible(report):
    (cell,) = report.cells
    for measured in (cell.ours, cell.transformers):
        assert 0 < measured.roofline_fraction < 1.5
    assert cell.ours.roofline_tokens_per_s > cell.transformers.roofline_tokens_per_s


def test_json_round_trips(report):
    data = json.loads(json.dumps(report.to_json_dict()))
    assert data["cells"][0]["samples"] == SAMPLES
    assert "| 2 | 16 |" in decode.format_table(report)


def test_benchmark_shapes_translate_to_transformers():
    for cfg in SHAPES.values():
        assert transformers_config(cfg).vocab_size == cfg.vocab_size
    llama = SHAPES["llama3.2-1b"]
    # Llama-3.2-1B has 1.24 B parameters, in bfloat16 2.47 GB read per step.
    assert roofline.weight_bytes_per_step(llama, "bfloat16") == pytest.approx(2.47e9, rel=0.01)


def test_cpu_default_is_the_quick_grid():
    args = bench.build_parser().parse_args(["decode"])
    assert args.samples is None and not args.full_grid
    assert [c.transformers for c in decode.QUICK_CPU_CELLS] == [True, False, False]
