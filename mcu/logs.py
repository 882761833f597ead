"""Logging set-up shared by the commands: one line per state change, not one per broken frame.

On a lossy link aiortc's receivers log a WARNING for every video frame the decoder refuses (a
frame whose reference was lost), ten or more a second per site, until a keyframe arrives. The
MCU already asks for that keyframe and logs the request; the repeats say nothing new. They are
passed at most once per `interval` per logger, with the number held back since the last one.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)

REPEAT_INTERVAL = 10.0  # seconds between two warnings of the same kind
NOISY = ("aiortc.rtcrtpreceiver",)  # loggers whose per-frame warnings are thinned


class Repeats(logging.Filter):
    """Let a WARNING through at most once per `interval` seconds; count the rest."""

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.held = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self.held += 1
            return False
        if self.held and self._last is not None:
            record.msg = (f"{record.getMessage()} ({self.held} more like it in the last "
                          f"{now - self._last:.0f} s not shown)")
            record.args = ()
        self.held = 0
        self._last = now
        return True


def configure(verbose: bool) -> None:
    """The root handler at INFO (DEBUG when `verbose`), library detail kept out of it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose:
        return
    # aioice logs every connectivity check at INFO: detail, not state changes
    logging.getLogger("aioice").setLevel(logging.WARNING)
    for name in NOISY:
        logging.getLogger(name).addFilter(Repeats())
