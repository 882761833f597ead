"""Per-address limit on failed logins: a guessing client is refused for a while.

After `max_failures` failed attempts from one address within `window` seconds, that address gets
429 until the oldest of those failures leaves the window. Memory is bounded: at most
`max_addresses` addresses are tracked, the least recently seen forgotten first.
"""

from __future__ import annotations

import collections
import logging
import time

logger = logging.getLogger(__name__)


class FailureLimiter:
    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 max_addresses: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self.refused = 0

    def retry_after(self, address: str, now: float | None = None) -> float | None:
        """Seconds `address` must wait, or None when it may try."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) < self.max_failures:
            return None
        self.refused += 1
        return self.window - (now - failures[0])

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            failures = self._failures[address] = collections.deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        failures.append(now)
        if len(failures) == self.max_failures:
            logger.warning("too many failed logins from %s: refused for up to %.0f s", address,
                           self.window)
