"""The GPU goals are read off decode reports: roofline and beating the plain loop at prompt 256,
twice the plain loop at 1536; a cell without its own plain loop borrows a matching report's."""

import json

import pytest

from ttc_jax.bench import goals
from ttc_jax.cli import bench

H100 = "NVIDIA H100 80GB HBM3 (x1)"


def cell(samples, prompt_len, fraction, plain_ratio=None, ours=None, plain=None, new_tokens=256):
    return {
        "samples": samples,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "ours": {"roofline_fraction": fraction, "tokens_per_s": ours},
        "plain_loop": None if plain is None else {"tokens_per_s": plain},
        "plain_loop_ratio": plain_ratio,
    }


def report(attention, cells, device=H100, shape="llama3.2-1b", dtype="bfloat16"):
    return {
        "attention": attention,
        "device": device,
        "shape": shape,
        "dtype": dtype,
        "cells": cells,
    }


REPORT = report(
    "pallas",
    [
        cell(16, 256, 0.74, plain_ratio=1.1),
        cell(256, 256, 0.52, plain_ratio=0.9),
        cell(256, 1536, 0.40, plain_ratio=2.6),
        cell(64, 1536, 0.30),  # no goal here
    ],
)


def test_goal_cells_are_checked_and_others_ignored():
    checks = goals.check_goals([("run.json", REPORT)])
    assert [(c.samples, c.prompt_len, c.goal, c.met) for c in checks] == [
        (16, 256, ">= 70% roofline", True),
        (16, 256, "> plain loop", True),
        (256, 256, ">= 70% roofline", False),
        (256, 256, "> plain loop", False),
        (256, 1536, ">= 2x plain loop", True),
    ]
    assert checks[0].source == f"pallas, {H100} (run.json)"
    assert all(c.baseline_source is None for c in checks)
    table = goals.format_checks(checks)
    assert "| 74.0% | yes |" in table and "| 52.0% | NO |" in table and "| 2.60x | yes |" in table
    assert "| > plain loop | 1.10x | yes |" in table and "| > plain loop | 0.90x | NO |" in table
    assert "plain loop from" not in table


def test_a_missing_plain_loop_is_not_a_pass():
    ours_only = {"cells": [cell(16, 256, 0.8), cell(256, 1536, 0.5)]}
    checks = goals.check_goals([("ours_only.json", ours_only)])
    assert [(c.goal, c.met) for c in checks] == [
        (">= 70% roofline", True),
        ("> plain loop", None),
        (">= 2x plain loop", None),
    ]
    assert checks[0].source == "xla, ? (ours_only.json)"
    table = goals.format_checks(checks)
    assert "| > plain loop | - | not measured |" in table
    assert "| >= 2x plain loop | - | not measured |" in table


def borrowing(other):
    """The goal rows of a pallas run without the plain loop, checked beside ``other``."""
    pallas = report("pallas", [cell(16, 256, 0.7, ours=1000.0), cell(256, 1536, 0.4, ours=5000.0)])
    checks = goals.check_goals([("pallas.json", pallas), *other])
    return [c for c in checks if c.source.endswith("(pallas.json)") and "plain" in c.goal]


XLA = report(
    "xla",
    [
        cell(16, 256, 0.6, plain_ratio=0.9, ours=900.0, plain=1000.0),
        cell(256, 1536, 0.3, plain_ratio=1.5, ours=3000.0, plain=2000.0),
    ],
)


def test_a_skipped_plain_loop_is_borrowed_from_a_matching_report():
    beat, double = borrowing([("xla.json", XLA)])
    assert (beat.measured, beat.met, beat.baseline_source) == (1.0, False, "xla.json")
    assert (double.measured, double.met, double.baseline_source) == (2.5, True, "xla.json")
    table = goals.format_checks([beat, double])
    assert "| > plain loop | 1.00x (plain loop from xla.json) | NO |" in table
    assert "| >= 2x plain loop | 2.50x (plain loop from xla.json) | yes |" in table
    # The report that measured its own plain loop keeps its own ratio.
    xla_checks = goals.check_goals([("xla.json", XLA), ("pallas.json", report("pallas", []))])
    assert [(c.measured, c.baseline_source) for c in xla_checks if "plain" in c.goal] == [
        (0.9, None),
        (1.5, None),
    ]


@pytest.mark.parametrize(
    "changed",
    [
        {"device": "NVIDIA H200 (x1)"},
        {"shape": "smollm2"},
        {"dtype": "float32"},
        {"device": None},
    ],
)
def test_no_borrowing_across_devices_shapes_or_dtypes(changed):
    other = {**XLA, **changed}
    assert [(c.measured, c.met, c.baseline_source) for c in borrowing([("xla.json", other)])] == [
        (None, None, None),
        (None, None, None),
    ]


def test_no_borrowing_when_the_setup_is_unknown():
    pallas = {"cells": [cell(256, 1536, 0.4, ours=5000.0)]}  # no device, shape or dtype
    xla = {"cells": [cell(256, 1536, 0.3, ours=3000.0, plain=2000.0)]}
    checks = goals.check_goals([("pallas.json", pallas), ("xla.json", xla)])
    assert (checks[0].measured, checks[0].met, checks[0].baseline_source) == (None, None, None)


def test_no_borrowing_across_new_token_counts():
    other = report("xla", [cell(16, 256, 0.6, ours=900.0, plain=500.0, new_tokens=128)])
    (beat, _) = borrowing([("xla.json", other)])
    assert (beat.measured, beat.met, beat.baseline_source) == (None, None, None)


def test_the_first_matching_report_wins():
    faster = report("xla", [cell(16, 256, 0.6, ours=900.0, plain=500.0)])
    mismatched = {**faster, "dtype": "float32"}
    without_plain = report("xla", [cell(16, 256, 0.6, ours=900.0)])
    beat, _ = borrowing(
        [
            ("mismatched.json", mismatched),
            ("without_plain.json", without_plain),
            ("faster.json", faster),
            ("xla.json", XLA),
        ]
    )
    assert (beat.measured, beat.met, beat.baseline_source) == (2.0, True, "faster.json")
    beat, _ = borrowing([("xla.json", XLA), ("faster.json", faster)])
    assert (beat.measured, beat.baseline_source) == (1.0, "xla.json")


def test_cli_reads_report_files(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(REPORT))
    bench.main(["goals", str(path)])
    assert "| 2.60x | yes |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="ttc-bench goals"):
        bench.main(["goals", str(tmp_path / "missing.json")])


def test_cli_names_the_borrowed_plain_loop(tmp_path, capsys):
    pallas = report("pallas", [cell(256, 1536, 0.4, ours=5000.0)])
    paths = [tmp_path / "xla.json", tmp_path / "pallas.json"]
    for path, data in zip(paths, (XLA, pallas), strict=True):
        path.write_text(json.dumps(data))
    bench.main(["goals", *map(str, paths)])
    assert "| 2.50x (plain loop from xla.json) | yes |" in capsys.readouterr().out
