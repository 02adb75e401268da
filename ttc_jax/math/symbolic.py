"""Symbolic equivalence in a killable worker process, bounded in time in any thread.

math-verify's own timeouts use SIGALRM, which works only in the main thread and cannot
interrupt C code (sympy evaluating 10**(10**10) holds the interpreter until it finishes).
So every symbolic check runs in a worker process (symbolic_worker.py) that the caller kills
when the deadline passes; the same mechanism serves the main thread and worker threads.

Each calling thread gets its own worker (a thread-local), so concurrent graders never queue
behind each other and a deadline measures the check itself. A worker is a fresh interpreter
(not a fork: the caller may be a multithreaded JAX process) and takes under a second (about
0.4 s on a 2-core machine) to import sympy and math-verify; that start is bounded separately
and is not charged to a check's deadline. A killed worker's replacement starts at once, in
the background. A worker exits with its thread, or when the parent process goes.
"""

import dataclasses
import json
import os
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection

from ttc_jax.math import symbolic_worker

WORKER_START_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class SymbolicVerdict:
    """Outcome of one check; `reason` says why it could not decide (empty when it did)."""

    equivalent: bool
    reason: str = ""


def _stop(process: subprocess.Popen, *connections: Connection) -> None:
    process.kill()
    process.wait()
    for connection in connections:
        connection.close()


class _Worker:
    """One worker process and the parent's ends of its two pipes."""

    def __init__(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        # -P keeps the script's own folder (ttc_jax/math) off sys.path, where file names such
        # as datasets.py would shadow installed packages.
        command = [sys.executable, "-P", symbolic_worker.__file__, str(request_read)]
        self.process = subprocess.Popen(
            [*command, str(reply_write)],
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=_worker_environment(),
        )
        os.close(request_read)
        os.close(reply_write)
        self.requests = Connection(request_write, readable=False)
        self.replies = Connection(reply_read, writable=False)
        self.ready = False
        self._finalizer = weakref.finalize(self, _stop, self.process, self.requests, self.replies)

    def _wait_until_ready(self) -> bool:
        if not self.ready:
            try:
                self.ready = (
                    self.replies.poll(WORKER_START_TIMEOUT_S)
                    and self.replies.recv_bytes() == symbolic_worker.READY_MESSAGE
                )
            except (EOFError, OSError):
                self.ready = False
        return self.ready

    def check(self, pred: str, gold: str, timeout_s: float) -> SymbolicVerdict | None:
        """The worker's verdict, or None when it missed the deadline or is broken."""
        if not self._wait_until_ready():
            return None
        try:
            self.requests.send_bytes(json.dumps([pred, gold]).encode())
            if self.replies.poll(timeout_s):
                equivalent, error = json.loads(self.replies.recv_bytes())
                return SymbolicVerdict(bool(equivalent), error)
        except (EOFError, OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        self._finalizer()


def _worker_environment() -> dict[str, str]:
    """The caller's environment with its sys.path as PYTHONPATH, so that the worker finds
    math-verify and sympy wherever this process found them."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return environment


_thread_state = threading.local()


def _thread_worker() -> _Worker:
    worker = getattr(_thread_state, "worker", None)
    if worker is None:
        worker = _thread_state.worker = _Worker()
    return worker


def warm_up() -> bool:
    """Starts this thread's worker and waits for it, so the first check does not; True if up."""
    return _thread_worker()._wait_until_ready()


def check_equivalent(pred: str, gold: str, timeout_s: float) -> SymbolicVerdict:
    """math-verify's verdict within `timeout_s` seconds; not equivalent (with a reason) if late.

    Safe to call from any thread. A late or broken worker is killed and a new one started.
    """
    worker = _thread_worker()
    verdict = worker.check(pred, gold, timeout_s)
    if verdict is not None:
        return verdict
    started = worker.ready
    worker.close()
    _thread_state.worker = _Worker()
    if not started:
        return SymbolicVerdict(False, "grading worker failed to start")
    return SymbolicVerdict(False, f"symbolic check exceeded {timeout_s:g} s")
