"""Churn and soak: sites joining and leaving over and over leave nothing behind.

The default suite runs a short churn; `-m slow` runs 500 cycles and a 10-minute 8-site soak (the
reliability report runs them and prints the figures)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from dataclasses import dataclass

import pytest

from mcu.dial import Call
from mcu.sources import ColourTrack, ToneTrack

from .conftest import room_config, site_token, url


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    threads: int
    fds: int
    tasks: int

    @staticmethod
    def now() -> Usage:
        gc.collect()
        with open("/proc/self/status", encoding="ascii") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        # the default executor's workers come and go with load; they are not owned threads
        threads = sum(not t.name.startswith(("ThreadPoolExecutor", "asyncio_"))
                      for t in threading.enumerate())
        return Usage(rss / 1024, threads, len(os.listdir("/proc/self/fd")),
                     len(asyncio.all_tasks()))


async def churn(server, cycles: int) -> tuple[Usage, Usage, int]:  # type: ignore[no-untyped-def]
    room = server.rooms["test"]
    anchor = Call(url(server, "test", "hq"), site_token("hq"),
                  video=ColourTrack((82, 90, 240), 160, 120, fps=10), audio=ToneTrack(430, 0.1))
    await anchor.connect()
    await anchor.wait_video(3, timeout=20)

    async def cycle() -> None:
        call = Call(url(server, "test", "north"), site_token("north"),
                    video=ColourTrack((145, 54, 34), 160, 120, fps=10), audio=ToneTrack(610, 0.1))
        await call.connect()
        await call.wait_video(1, timeout=20)
        await call.hang_up()

    try:
        for _ in range(5):  # warm-up: first-use caches and pools
            await cycle()
        await asyncio.sleep(1.0)
        before = Usage.now()
        for _ in range(cycles):
            await cycle()
        await asyncio.sleep(2.0)
        after = Usage.now()
        frames = anchor.video_frames
        await anchor.wait_video(5, timeout=10)
        assert [s.id for s in room.roster] == ["hq"]
        return before, after, anchor.video_frames - frames
    finally:
        await anchor.hang_up()


def check(before: Usage, after: Usage, cycles: int) -> None:
    assert after.threads <= before.threads, (before, after)
    assert after.tasks <= before.tasks, (before, after)
    assert after.fds <= before.fds + 2, (before, after)
    # memory: a small allowance for allocator slack, not growth per cycle
    assert after.rss_mb - before.rss_mb < 20 + 0.05 * cycles, (before, after)


@pytest.mark.timeout(300)
async def test_join_and_leave_cycles_leave_nothing_behind(mcu_server) -> None:
    server = await mcu_server(room_config(["hq", "north"], width=160, height=90, fps=10))
    cycles = int(os.environ.get("MCU_CHURN_CYCLES", "30"))
    before, after, frames = await churn(server, cycles)
    print(f"churn {cycles} cycles: {before} -> {after}")
    check(before, after, cycles)
    assert frames >= 5, "the anchor site kept receiving"


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_500_join_and_leave_cycles(mcu_server) -> None:
    server = await mcu_server(room_config(["hq", "north"], width=160, height=90, fps=10))
    before, after, _ = await churn(server, 500)
    print(f"churn 500 cycles: {before} -> {after}")
    check(before, after, 500)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_ten_minute_soak_with_eight_sites_keeps_memory_flat(mcu_server) -> None:
    sites = ["hq", "n1", "n2", "n3", "n4", "n5", "n6", "n7"]
    seconds = float(os.environ.get("MCU_SOAK_SECONDS", "600"))
    server = await mcu_server(room_config(sites, layout="3x3", width=320, height=180, fps=15))
    calls = [Call(url(server, "test", site), site_token(site),
                  video=ColourTrack((40 + 20 * i, 128, 128), 320, 240, fps=15),
                  audio=ToneTrack(300 + 100 * i, 0.05))
             for i, site in enumerate(sites)]
    await asyncio.gather(*(call.connect() for call in calls))
    try:
        await asyncio.gather(*(call.wait_video(5, timeout=30) for call in calls))
        await asyncio.sleep(30)  # settle
        samples = [Usage.now()]
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            await asyncio.sleep(min(30.0, seconds / 10))
            samples.append(Usage.now())
        growth = samples[-1].rss_mb - samples[0].rss_mb
        print(f"soak {seconds:.0f} s: rss {samples[0].rss_mb:.0f} -> {samples[-1].rss_mb:.0f} MB")
        assert growth < 30, [s.rss_mb for s in samples]
        assert samples[-1].threads == samples[0].threads
        assert all(call.video_frames > 0 for call in calls)
        room = server.rooms["test"]
        assert room.video_clock.late <= 0.01 * room.video_clock.ticks + 5
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls))
