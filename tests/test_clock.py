"""The media clock: regular ticks, late ticks skipped and counted, a failing tick survived."""

from __future__ import annotations

import threading
import time

from mcu.clock import Clock
import itertools


def test_ticks_follow_the_period_and_stop_joins() -> None:
    deadlines: list[float] = []
    clock = Clock("test-clock", 0.01, deadlines.append)
    clock.start()
    time.sleep(0.3)
    clock.stop()
    assert not clock.running
    assert all(t.name != "test-clock" for t in threading.enumerate())
    steps = [b - a for a, b in itertools.pairwise(deadlines)]
    assert len(deadlines) >= 10
    # deadlines are exact multiples of the period apart, whatever the scheduler did
    assert all(abs(step / 0.01 - round(step / 0.01)) < 1e-6 for step in steps)


def test_a_slow_tick_skips_deadlines_instead_of_queueing_them() -> None:
    calls: list[float] = []

    def tick(deadline: float) -> None:
        calls.append(deadline)
        if len(calls) == 2:
            time.sleep(0.2)  # twenty periods

    clock = Clock("slow-clock", 0.01, tick)
    clock.start()
    time.sleep(0.35)
    clock.stop()
    assert clock.late >= 15
    # after the slow tick the clock did not run the missed ones back to back
    jump = calls[2] - calls[1]
    assert jump >= 0.15, jump


def test_a_failing_tick_does_not_stop_the_clock() -> None:
    count = 0

    def tick(deadline: float) -> None:
        nonlocal count
        count += 1
        raise RuntimeError("broken frame")

    clock = Clock("failing-clock", 0.01, tick)
    clock.start()
    time.sleep(0.2)
    clock.stop()
    assert clock.errors == count >= 5
