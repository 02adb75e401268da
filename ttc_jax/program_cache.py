"""Keeps a long run's compiled programs within the process's memory mappings.

XLA:CPU maps each compiled kernel into the process as three small memory mappings (code,
read-only data, data) and keeps them while its program stays in JAX's caches. Linux caps
the mappings of a process (``vm.max_map_count``, 65,530 by default). A run that compiles
many programs (the main job's study: every strategy, budget and lane size) can reach it;
compiling then fails with "LLVM compilation error: Cannot allocate memory", and jaxlib
0.10.2 crashed with a segmentation fault while raising that error. Measured with
SmolLM2 (4 samples of 3 prompts, 8 tokens): 4,740 mappings with the model programs'
CPU options (`ttc_jax.xla_options`), 3,500 without, 690 once the caches were cleared.

`release_if_crowded` clears JAX's caches when the mappings pass a share of the limit, so
the programs still needed compile again and the process goes on. `CompileLog` counts the
programs a block of code compiled (benchmarks, `BatchStats.programs_compiled`).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import jax

log = logging.getLogger(__name__)

MAPS = Path("/proc/self/maps")
MAX_MAP_COUNT = Path("/proc/sys/vm/max_map_count")
# A search call compiles its programs between two checks; this leaves room for a few
# thousand kernels.
DEFAULT_SHARE = 0.6


def mapping_count() -> int | None:
    """The process's memory mappings now, or None where the system does not say (not Linux)."""
    try:
        with MAPS.open("rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


def mapping_limit() -> int | None:
    """The kernel's limit on a process's memory mappings, or None where it is not known."""
    try:
        return int(MAX_MAP_COUNT.read_text())
    except (OSError, ValueError):
        return None


def release_if_crowded(share: float = DEFAULT_SHARE) -> bool:
    """Clears JAX's caches of compiled programs when the process holds more than ``share`` of
    the mappings it may; returns whether it did. Results do not change: a program needed
    again is compiled again, the same way."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    used, limit = mapping_count(), mapping_limit()
    if used is None or limit is None or used < share * limit:
        return False
    jax.clear_caches()
    gc.collect()
    log.warning(
        "released compiled programs: the process held %d of its %d memory mappings "
        "(%d after); the programs still needed compile again",
        used,
        limit,
        mapping_count() or 0,
    )
    return True


# Event names of jax._src.dispatch: tracing, lowering to StableHLO, and XLA compilation
# (one event per compiled program).
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileLog:
    """Counts XLA programs compiled inside a ``with`` block and sums the compile seconds."""

    def __enter__(self) -> CompileLog:
        self.programs = 0
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._record)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._record)

    def _record(self, event: str, duration: float, **_) -> None:
        if event in (_TRACE_EVENT, _LOWER_EVENT, _COMPILE_EVENT):
            self.seconds += duration
        if event == _COMPILE_EVENT:
            self.programs += 1
