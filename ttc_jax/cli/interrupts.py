"""Ctrl-C that always stops a command.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT
arrives. When that is a garbage-collector callback (JAX registers one that runs on every
full collection) or a ``__del__``, the interpreter prints "Exception ignored in ..." and goes
on: the Ctrl-C is lost and a long study keeps running. ``persistent_interrupt`` re-delivers
the interrupt every ``repeat_s`` seconds until the command has caught it, so a swallowed one
costs at most that long, and keeps the swallowed one's "Exception ignored" traceback off the
terminal (it is not an error: the interrupt comes again).
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def persistent_interrupt(repeat_s: float = 1.0) -> Iterator[threading.Event]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` in the main thread and keeps
    raising it every ``repeat_s`` seconds until the caller sets the yielded event (on
    catching it) or the block ends. Outside the main thread it changes nothing."""
    caught = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    repeater: list[threading.Thread] = []

    main_thread = threading.main_thread().ident

    def repeat() -> None:
        while not caught.wait(repeat_s):
            if hasattr(signal, "pthread_kill"):
                # A real signal, so a main thread asleep in a system call wakes for it.
                signal.pthread_kill(main_thread, signal.SIGINT)
            else:
                _thread.interrupt_main()

    def on_sigint(signum, frame) -> None:
        if caught.is_set():  # a repeat already on its way when the caller caught one
            return
        if not repeater:
            repeater.append(threading.Thread(target=repeat, name="interrupt-repeat", daemon=True))
            repeater[0].start()
        raise KeyboardInterrupt

    def on_unraisable(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_hook, sys.unraisablehook = sys.unraisablehook, on_unraisable
    try:
        yield caught
    finally:
        caught.set()
        for thread in repeater:
            thread.join()
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
