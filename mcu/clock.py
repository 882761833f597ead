"""A media clock: a thread that calls a function at a fixed period on monotonic deadlines.

A tick that comes too late is skipped and counted, never queued behind: the next call happens at the
next deadline still ahead, so one slow tick cannot build a backlog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Clock:
    """Call `tick(deadline)` every `period` seconds from a thread named `name`."""

    def __init__(self, name: str, period: float, tick: Callable[[float], None]) -> None:
        if period <= 0:
            raise ValueError(f"clock {name}: period must be positive, not {period}")
        self.name = name
        self.period = period
        self.ticks = 0
        self.late = 0
        self.errors = 0
        self.busy_seconds = 0.0
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the thread (blocks at most one tick's duration)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            # skip the deadlines we already missed instead of running them back to back
            behind = time.monotonic() - deadline
            if behind > self.period:
                missed = int(behind / self.period)
                self.late += missed
                deadline += missed * self.period

            started = time.monotonic()
            try:
                self._tick(deadline)
            except Exception:
                self.errors += 1
                if self.errors == 1 or self.errors % 500 == 0:
                    logger.exception("clock %s: tick failed (%d failures so far)",
                                     self.name, self.errors)
            self.busy_seconds += time.monotonic() - started
            self.ticks += 1
            deadline += self.period
