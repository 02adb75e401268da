"""Ctrl-C stops a command even when the first interrupt lands where Python swallows it."""

import signal
import time

import pytest

from ttc_jax.cli.interrupts import persistent_interrupt


def test_a_swallowed_ctrl_c_is_delivered_again():
    swallowed = 0
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), persistent_interrupt(repeat_s=0.05):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:  # what a garbage-collector callback does with it
            swallowed += 1
        while time.monotonic() - start < 30:
            time.sleep(0.01)
    assert swallowed == 1
    assert time.monotonic() - start < 10


def test_a_caught_ctrl_c_is_not_repeated_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    with persistent_interrupt(repeat_s=0.02) as caught:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            caught.set()
        time.sleep(0.2)  # a repeat would raise here
    assert signal.getsignal(signal.SIGINT) is before


def test_a_swallowed_ctrl_c_prints_no_traceback(capsys):
    class SwallowsOnCollect:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # raised inside __del__: Python swallows it

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), persistent_interrupt(repeat_s=0.05):
        SwallowsOnCollect()
        time.sleep(30)  # a real signal wakes the sleep
    assert time.monotonic() - start < 10
    assert "Exception ignored" not in capsys.readouterr().err
