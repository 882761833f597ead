"""End to end: four real aiortc sites on loopback dial a room and each gets one composite and an
N-1 mix. Each site sends its own flat colour and sine tone, so both can be found again in what
every site receives."""

from __future__ import annotations

import asyncio

import aiohttp
import av
import numpy as np
import pytest

from mcu.dial import Call
from mcu.labels import placeholder
from mcu.layout import load_layout
from mcu.sources import ColourTrack, ToneTrack

from .analysis import colour_close, region_colour, tone_power
from .conftest import LAYOUTS, room_config, site_token, url

SITES = ["hq", "north", "centre", "south"]
COLOURS = {  # I420 (Y, U, V): red, green, blue, yellow
    "hq": (82, 90, 240),
    "north": (145, 54, 34),
    "centre": (41, 240, 110),
    "south": (210, 16, 146),
}
TONES = {"hq": 430.0, "north": 610.0, "centre": 830.0, "south": 1070.0}
WIDTH, HEIGHT = 320, 180


def make_call(server, site: str) -> Call:  # type: ignore[no-untyped-def]
    return Call(
        url(server, "test", site),
        site_token(site),
        video=ColourTrack(COLOURS[site], 320, 240, fps=15),
        audio=ToneTrack(TONES[site], amplitude=0.2),
    )


async def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def check_video(call: Call) -> None:
    """Every tile of the 2x2 composite shows its site's colour, in config order."""
    frame = call.latest_video
    assert frame is not None, f"{call.site} received no composite"
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    layout = load_layout(LAYOUTS / "2x2.toml")
    for tile, site in zip(layout.tiles, SITES, strict=True):
        measured = region_colour(frame, tile.rect(WIDTH, HEIGHT))
        assert colour_close(measured, COLOURS[site]), (
            f"{call.site} sees {measured} in {site}'s tile, expected {COLOURS[site]}"
        )


def check_audio(call: Call) -> None:
    """The mix holds every other site's tone, and not the site's own."""
    samples = call.recent_audio(1.0)
    assert len(samples) >= 40000, f"{call.site} received only {len(samples)} samples"
    power = {site: tone_power(samples, TONES[site]) for site in SITES}
    others = [power[s] for s in SITES if s != call.site]
    assert min(others) > 0, f"{call.site}: silent mix {power}"
    assert power[call.site] < min(others) / 1000, (
        f"{call.site} hears itself: own {power[call.site]:.3g} vs others {min(others):.3g}"
    )


@pytest.mark.timeout(120)
async def test_four_sites_see_everyone_and_hear_all_but_themselves(mcu_server) -> None:
    server = await mcu_server(room_config(SITES, width=WIDTH, height=HEIGHT))
    calls = {site: make_call(server, site) for site in SITES}
    await asyncio.gather(*(call.connect() for call in calls.values()))
    try:
        room = server.rooms["test"]
        await wait_until(lambda: all(s.frames_in > 10 for s in room.roster) and
                         len(room.roster) == 4, 20, "video from all four sites")
        await asyncio.sleep(3.0)  # composites with all four tiles, a full second of mix
        for call in calls.values():
            check_video(call)
            check_audio(call)

        # hang up and dial again: the new session is still kept out of its own mix
        await calls["hq"].hang_up()
        await wait_until(lambda: len(room.roster) == 3, 5, "the roster to drop hq")
        assert [s.id for s in room.roster] == SITES[1:]
        calls["hq"] = make_call(server, "hq")
        await calls["hq"].connect()
        await wait_until(lambda: len(room.roster) == 4 and room.sites["hq"].frames_in > 10, 20,
                         "hq to send video again")
        assert room.roster[0].id == "hq", "the chair goes back to the first tile"
        await asyncio.sleep(3.0)
        for call in calls.values():
            check_video(call)
            check_audio(call)
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


@pytest.mark.timeout(120)
async def test_dialling_again_replaces_the_session(mcu_server) -> None:
    server = await mcu_server(room_config(SITES, width=WIDTH, height=HEIGHT))
    room = server.rooms["test"]
    first = make_call(server, "hq")
    await first.connect()
    await wait_until(lambda: room.sites.get("hq") is not None and room.sites["hq"].frames_in > 0,
                     15, "hq's first session to send video")
    first_session = room.sites["hq"].session_id
    first_location = first.location

    second = make_call(server, "hq")
    await second.connect()
    try:
        assert [s.id for s in room.roster] == ["hq"]
        assert room.sites["hq"].session_id != first_session
        await second.wait_video(3, timeout=15)

        # the replaced session is gone: hanging it up finds nothing
        first.location = None  # hang up the first call locally only
        await first.hang_up()
        async with aiohttp.ClientSession() as http:
            async with http.delete(first_location or "",
                                   headers={"Authorization": f"Bearer {site_token('hq')}"}) as r:
                assert r.status == 404
        assert [s.id for s in room.roster] == ["hq"]
        await second.wait_video(3, timeout=10)
    finally:
        await second.hang_up()


@pytest.mark.timeout(120)
async def test_a_silent_site_keeps_its_last_frame_then_shows_its_placeholder(mcu_server) -> None:
    server = await mcu_server(room_config(SITES[:2], width=WIDTH, height=HEIGHT))
    room = server.rooms["test"]
    room.stale_after = 1.5
    watcher = make_call(server, "hq")
    silent_video = ColourTrack(COLOURS["north"], 320, 240, fps=15)
    silent = Call(url(server, "test", "north"), site_token("north"), video=silent_video,
                  audio=ToneTrack(TONES["north"], amplitude=0.2))
    await asyncio.gather(watcher.connect(), silent.connect())
    layout = load_layout(LAYOUTS / "2x2.toml")
    north_tile = layout.tiles[1].rect(WIDTH, HEIGHT)
    try:
        await wait_until(lambda: len(room.roster) == 2 and room.sites["north"].frames_in > 5, 15,
                         "north's video")
        await asyncio.sleep(1.0)
        assert colour_close(region_colour(watcher.latest_video, north_tile), COLOURS["north"])

        # north's camera stops; its session stays up
        silent_video.stop()
        stopped = asyncio.get_running_loop().time()
        await asyncio.sleep(0.8)
        assert colour_close(region_colour(watcher.latest_video, north_tile), COLOURS["north"]), (
            "the last frame is kept while the site is only briefly silent"
        )
        # then the tile shows north's placeholder (its name on slate) instead of a frozen picture
        _, _, w, h = north_tile
        py, pu, pv = placeholder(room.sites["north"].name, w, h)
        card = av.VideoFrame.from_ndarray(np.vstack([py, np.concatenate(
            [pu.reshape(-1), pv.reshape(-1)]).reshape(-1, w)]), format="yuv420p")
        expected = tuple(round(c) for c in region_colour(card, (0, 0, w, h)))
        await wait_until(
            lambda: colour_close(region_colour(watcher.latest_video, north_tile), expected),
            10, "north's tile to show its placeholder")
        elapsed = asyncio.get_running_loop().time() - stopped
        assert 1.0 < elapsed < 5.0, elapsed
        assert [s.id for s in room.roster] == ["hq", "north"]
        before = watcher.video_frames
        await asyncio.sleep(1.0)
        assert watcher.video_frames - before >= 10, "the silent site never delays the clock"
    finally:
        await asyncio.gather(watcher.hang_up(), silent.hang_up())


@pytest.mark.timeout(120)
async def test_a_site_that_prefers_h264_gets_h264(mcu_server) -> None:
    from aiortc import RTCRtpSender

    server = await mcu_server(room_config(SITES[:2], width=WIDTH, height=HEIGHT))
    call = make_call(server, "hq")
    other = make_call(server, "north")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType == "video/H264"]
    call.video_codecs = h264
    await asyncio.gather(call.connect(), other.connect())
    try:
        await call.wait_video(10, timeout=20)
        assert call.negotiated_video_codec == "video/H264"
        await asyncio.sleep(1.0)
        layout = load_layout(LAYOUTS / "2x2.toml")
        measured = region_colour(call.latest_video, layout.tiles[1].rect(WIDTH, HEIGHT))
        assert colour_close(measured, COLOURS["north"]), measured
    finally:
        await asyncio.gather(call.hang_up(), other.hang_up())
