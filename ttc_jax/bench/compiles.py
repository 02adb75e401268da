"""`CompileLog`: how many XLA programs a block of code compiled, and the seconds it took."""

from __future__ import annotations

import jax

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
