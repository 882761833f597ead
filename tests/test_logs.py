"""Library warnings repeated frame after frame are thinned to one per interval."""

from __future__ import annotations

import logging

import pytest

from mcu.logs import Repeats


def test_a_repeated_warning_passes_once_per_interval_with_the_count(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("mcu.logs.time.monotonic", lambda: clock[0])
    noisy = logging.getLogger("test.noisy.decoder")
    noisy.addFilter(Repeats(interval=10.0))
    with caplog.at_level(logging.INFO, logger="test.noisy.decoder"):
        for step in range(25):  # 10 a second for 2.5 s, then 12 s later one more
            clock[0] = 100.0 + step * 0.1
            noisy.warning("failed to decode %s frame: %s", "VP8", "100% broken")
        noisy.info("state change")  # other levels are never held back
        clock[0] = 112.0
        noisy.warning("failed to decode %s frame: %s", "VP8", "again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "failed to decode VP8 frame: 100% broken",
        "state change",
        "failed to decode VP8 frame: again (24 more like it in the last 12 s not shown)",
    ]
