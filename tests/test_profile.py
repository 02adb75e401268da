"""Benchmark traces land flat where asked, and their device time is totalled by event name."""

import gzip
import json

import jax.numpy as jnp
import pytest

from ttc_jax.bench import profile
from ttc_jax.cli import bench


def write_trace(path, events):
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)


LOOP = {"hlo_module": "jit_extend"}
START = {"hlo_module": "jit_start"}
GPU_TRACE = [
    {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
    {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
    {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 500, "name": "python"},  # host: ignored
    {"ph": "X", "pid": 2, "tid": 7, "ts": 10, "dur": 30, "name": "gemm", "args": LOOP},
    {"ph": "X", "pid": 2, "tid": 7, "ts": 50, "dur": 30, "name": "gemm", "args": LOOP},
    {"ph": "X", "pid": 2, "tid": 8, "ts": 90, "dur": 20, "name": "loop_fusion", "args": START},
]


def test_device_time_is_totalled_by_name(tmp_path):
    path = tmp_path / "run.trace.json.gz"
    write_trace(path, GPU_TRACE)
    summary = profile.summarize(path)
    assert summary.devices == ["/device:GPU:0"]
    assert summary.busy_us == 80 and summary.span_us == 100
    assert [(e.name, e.count, e.total_us) for e in summary.events] == [
        ("gemm", 2, 60.0),
        ("loop_fusion", 1, 20.0),
    ]
    assert summary.events[0].share == pytest.approx(0.75)
    table = profile.format_summary(summary)
    assert "| 75.0% | 0.06 | 2 | 30.0 | gemm |" in table


def test_one_program_per_step(tmp_path, capsys):
    path = tmp_path / "run.trace.json.gz"
    write_trace(path, GPU_TRACE)
    summary = profile.summarize(path, program="jit_extend")
    assert [(e.name, e.count) for e in summary.events] == [("gemm", 2)]
    assert summary.busy_us == 60 and summary.event_count == 2
    table = profile.format_summary(summary, steps=2)
    assert "per step (2 steps): 30.0 us busy in 1.0 events" in table
    assert "| 100.0% | 0.06 | 2 | 30.0 | 1.00 | 30.0 | gemm |" in table
    with pytest.raises(ValueError, match=r"no kernels of program 'jit_decode'.*jit_extend"):
        profile.summarize(path, program="jit_decode")
    bench.main(["trace-summary", str(path), "--program", "jit_start", "--steps", "1"])
    assert "loop_fusion" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--steps must be at least 1"):
        bench.main(["trace-summary", str(path), "--steps", "0"])


def test_a_trace_without_device_events_is_refused_clearly(tmp_path):
    path = tmp_path / "cpu.trace.json.gz"
    write_trace(path, GPU_TRACE[:1] + GPU_TRACE[2:3])
    with pytest.raises(ValueError, match=r"no device events.*/host:CPU"):
        profile.summarize(path)


def test_capture_copies_both_trace_files_flat(tmp_path):
    files = profile.capture(lambda: jnp.ones(8) * 2, tmp_path / "traces", "cell")
    assert [f.name for f in files] == ["cell.xplane.pb", "cell.trace.json.gz"]
    assert all(f.parent == tmp_path / "traces" and f.stat().st_size > 0 for f in files)
    with gzip.open(files[1], "rt") as f:
        assert json.load(f)["traceEvents"]


def test_cli_prints_the_summary(tmp_path, capsys):
    path = tmp_path / "run.trace.json.gz"
    write_trace(path, GPU_TRACE)
    bench.main(["trace-summary", str(path), "--top", "1"])
    printed = capsys.readouterr().out
    assert "gemm" in printed and "loop_fusion" not in printed


def test_cli_reports_a_bad_trace_without_a_traceback(tmp_path):
    path = tmp_path / "cpu.trace.json.gz"
    write_trace(path, GPU_TRACE[:1])
    with pytest.raises(SystemExit, match=r"trace-summary: .*no device events"):
        bench.main(["trace-summary", str(path)])
    with pytest.raises(SystemExit, match=r"trace-summary: .*No such file"):
        bench.main(["trace-summary", str(tmp_path / "missing.trace.json.gz")])
