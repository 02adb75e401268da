"""The GPU goals are read off decode reports: roofline at prompt 256, plain-loop ratio at 1536."""

import json

import pytest

from ttc_jax.bench import goals
from ttc_jax.cli import bench


def cell(samples, prompt_len, fraction, plain_ratio=None):
    return {
        "samples": samples,
        "prompt_len": prompt_len,
        "ours": {"roofline_fraction": fraction},
        "plain_loop_ratio": plain_ratio,
    }


REPORT = {
    "attention": "pallas",
    "device": "NVIDIA H100 80GB HBM3 (x1)",
    "cells": [
        cell(16, 256, 0.74),
        cell(256, 256, 0.52),
        cell(256, 1536, 0.40, plain_ratio=2.6),
        cell(64, 1536, 0.30),  # no goal here
    ],
}


def test_goal_cells_are_checked_and_others_ignored():
    checks = goals.check_goals([("run.json", REPORT)])
    assert [(c.samples, c.prompt_len, c.met) for c in checks] == [
        (16, 256, True),
        (256, 256, False),
        (256, 1536, True),
    ]
    assert checks[0].source == "pallas, NVIDIA H100 80GB HBM3 (x1) (run.json)"
    table = goals.format_checks(checks)
    assert "| 74.0% | yes |" in table and "| 52.0% | NO |" in table and "| 2.60x | yes |" in table


def test_a_missing_plain_loop_is_not_a_pass():
    report = {"cells": [cell(256, 1536, 0.5)]}
    (check,) = goals.check_goals([("ours_only.json", report)])
    assert check.met is None and check.source == "xla, ? (ours_only.json)"
    assert "not measured" in goals.format_checks([check])


def test_cli_reads_report_files(tmp_path, capsys):
    path = tmp_path / "xla.json"
    path.write_text(json.dumps(REPORT))
    bench.main(["goals", str(path)])
    assert "| 2.60x | yes |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="ttc-bench goals"):
        bench.main(["goals", str(tmp_path / "missing.json")])
