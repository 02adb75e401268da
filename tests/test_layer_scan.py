"""The layers-unrolled-or-scanned benchmark measures both variants of the same function."""

import json

import pytest

from tests import engine_helpers
from ttc_jax.bench.layer_scan import format_layer_scan, measure_layer_scan


def test_both_variants_compute_the_same_hidden_states_and_are_timed():
    lm = engine_helpers.tiny_lm()
    costs = measure_layer_scan(lm, rows=4, steps=3, repeats=1)
    assert [c.name for c in costs] == ["unrolled", "scanned"]
    assert all(c.compile_s > 0 and c.ms_per_step > 0 for c in costs)
    assert costs[0].max_abs_diff == 0.0 and costs[1].max_abs_diff < 1e-4
    assert format_layer_scan(costs).count("\n") == 3


def test_layers_of_two_kinds_are_refused():
    lm = engine_helpers.tiny_lm(sliding_window=4, sliding_layers=(True, False))
    with pytest.raises(ValueError, match="layers of 2 kinds"):
        measure_layer_scan(lm)


def test_the_command_times_a_checkpoint_and_refuses_mixed_layers_in_one_line(tmp_path, capsys):
    from tests import checkpoints
    from ttc_jax.cli import bench

    llama = checkpoints.save_hf(checkpoints.hf_model("llama"), tmp_path / "llama")
    report = tmp_path / "layers.json"
    bench.main(["layers", "--checkpoint", str(llama), "--rows", "2", "--steps", "2",
                "--repeats", "1", "--json", str(report)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "| unrolled |" in printed and "| scanned |" in printed
    assert [row["name"] for row in json.loads(report.read_text())] == ["unrolled", "scanned"]
    gemma = checkpoints.save_hf(checkpoints.hf_model("gemma3"), tmp_path / "gemma3")
    with pytest.raises(SystemExit, match="ttc-bench layers: layers of 2 kinds"):
        bench.main(["layers", "--checkpoint", str(gemma)])
