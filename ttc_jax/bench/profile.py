"""Device traces of a benchmark call, and a summary of where the device time went.

`capture` runs a function under `jax.profiler.trace` and copies the trace files (an XPlane
protobuf for xprof/TensorBoard, a gzipped Chrome trace for anything else) flat into a folder
under a given name: the profiler nests them three levels deep under a timestamp. `summarize`
reads the Chrome trace and totals the device events (GPU kernels and copies) by name, the
numbers a "where the time goes" note needs without any viewer; restricted to one compiled
program (the decode loop, say) and divided by its step count, they read per decode step.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax

DEVICE_PREFIX = "/device:"
TRACE_SUFFIXES = (".xplane.pb", ".trace.json.gz")


def capture(run: Callable[[], object], directory: Path, name: str) -> list[Path]:
    """Runs ``run()`` under the JAX profiler; returns ``directory/name.xplane.pb`` and
    ``directory/name.trace.json.gz``."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        with jax.profiler.trace(scratch):
            jax.block_until_ready(run())
        copied = []
        for suffix in TRACE_SUFFIXES:
            found = sorted(Path(scratch).rglob(f"*{suffix}"))
            if not found:
                raise RuntimeError(f"the profiler wrote no *{suffix} file")
            target = directory / f"{name}{suffix}"
            shutil.copyfile(found[-1], target)
            copied.append(target)
    return copied


@dataclasses.dataclass(frozen=True)
class EventTotal:
    name: str
    count: int
    total_us: float
    share: float  # of all device event time in the trace


@dataclasses.dataclass(frozen=True)
class TraceSummary:
    devices: list[str]
    busy_us: float  # summed duration of device events (overlapping streams add up)
    event_count: int  # device events, all names
    span_us: float  # first device event start to last end
    events: list[EventTotal]  # largest total first


def summarize(path: Path, top: int = 25, program: str | None = None) -> TraceSummary:
    """Device events of a ``*.trace.json.gz`` totalled by name, largest first; with
    ``program``, only the kernels of that compiled program (``jit_extend``, say)."""
    with gzip.open(path, "rt") as f:
        trace = json.load(f)
    events = trace.get("traceEvents", [])
    names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    devices = {pid for pid, name in names.items() if name.startswith(DEVICE_PREFIX)}
    if not devices:
        raise ValueError(
            f"{path} has no device events (processes: {sorted(set(names.values()))}); "
            "a CPU run records host threads only"
        )
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    start, end = float("inf"), float("-inf")
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in devices:
            continue
        if program is not None and e.get("args", {}).get("hlo_module") != program:
            continue
        duration = float(e.get("dur", 0.0))
        totals[e["name"]][0] += 1
        totals[e["name"]][1] += duration
        start = min(start, float(e["ts"]))
        end = max(end, float(e["ts"]) + duration)
    if not totals:
        programs = sorted(
            {e["args"]["hlo_module"] for e in events if "hlo_module" in e.get("args", {})}
        )
        raise ValueError(f"{path} has no kernels of program {program!r}; it has {programs}")
    busy = sum(total for _, total in totals.values())
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    return TraceSummary(
        devices=sorted(names[pid] for pid in devices),
        busy_us=busy,
        event_count=int(sum(count for count, _ in totals.values())),
        span_us=max(end - start, 0.0),
        events=[
            EventTotal(name, int(count), total, total / busy if busy else 0.0)
            for name, (count, total) in ranked
        ],
    )


def format_summary(summary: TraceSummary, steps: int | None = None) -> str:
    """A markdown table; with ``steps``, also each event's time and count per step."""
    lines = [
        f"devices: {', '.join(summary.devices)}; device events {summary.busy_us / 1e3:,.1f} ms "
        f"over a span of {summary.span_us / 1e3:,.1f} ms"
    ]
    header = ["share", "total ms", "count", "mean us", "event"]
    if steps:
        lines[0] += (
            f"; per step ({steps} steps): {summary.busy_us / steps:,.1f} us busy in "
            f"{summary.event_count / steps:,.1f} events"
        )
        header[3:3] = ["us per step", "per step"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in summary.events:
        row = [f"{100 * e.share:.1f}%", f"{e.total_us / 1e3:,.2f}", f"{e.count:,}"]
        if steps:
            row += [f"{e.total_us / steps:,.1f}", f"{e.count / steps:,.2f}"]
        row += [f"{e.total_us / e.count:,.1f}", e.name[:100]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
