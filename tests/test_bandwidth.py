"""What a district site on the `low` profile actually receives, measured over 30 s (slow)."""

from __future__ import annotations

import asyncio

import pytest

from mcu.dial import Call
from mcu.media import clip
from mcu.sources import FileTrack

from .conftest import room_config, site_token, url

LOW = """
[profiles.low]
width = 640
height = 360
fps = 15
video_kbps = 300
audio_kbps = 24
"""
CLIPS = {"hq": "carphone_pristine.mp4", "north": "bikes.mp4", "centre": "bigbuckbunny.mp4",
         "south": "carphone_distorted.mp4"}


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_low_site_receives_within_110_percent_of_its_profile(mcu_server) -> None:
    server = await mcu_server(room_config(list(CLIPS), extra=LOW, profile="low"))
    calls = {site: Call(url(server, "test", site), site_token(site),
                        video=FileTrack(clip(name), "video", max_width=640),
                        audio=FileTrack(clip("bigbuckbunny.mp4"), "audio"))
             for site, name in CLIPS.items()}
    await asyncio.gather(*(call.connect() for call in calls.values()))
    try:
        await asyncio.gather(*(call.wait_video(10, timeout=20) for call in calls.values()))
        await asyncio.sleep(2.0)
        before = {site: (await call.stats()).bytes_in for site, call in calls.items()}
        await asyncio.sleep(30.0)
        after = {site: (await call.stats()).bytes_in for site, call in calls.items()}
        budget = (300 + 24) * 1000 / 8 * 30
        for site in CLIPS:
            received = after[site] - before[site]
            print(f"{site}: {received * 8 / 30 / 1000:.0f} kbit/s "
                  f"({received / budget:.0%} of the low profile)")
            assert received <= 1.10 * budget, f"{site} received {received / budget:.0%}"
            assert received >= 0.3 * budget, f"{site} received far too little"
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))
