"""End to end: the large tile of a speaker layout follows the site that talks, without flicker.

Four aiortc sites, each sending its own flat colour; their audio is silence until the test makes one
of them speak a Vietnamese sentence made by espeak-ng.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from mcu.dial import Call
from mcu.layout import load_layout
from mcu.media import speech_wav
from mcu.sources import AUDIO_RATE, AUDIO_SAMPLES, AUDIO_TIME_BASE, ColourTrack

from .analysis import colour_close, region_colour
from .conftest import LAYOUTS, room_config, site_token, url
from .test_conference import COLOURS, SITES

WIDTH, HEIGHT = 320, 180


class SpeakingTrack(MediaStreamTrack):
    """Silence, or the given speech samples once `speak()` is called; 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, speech: np.ndarray) -> None:
        super().__init__()
        self._speech = speech
        self._position: int | None = None
        self._sent = 0
        self._start: float | None = None

    def speak(self) -> None:
        self._position = 0

    @property
    def speaking(self) -> bool:
        return self._position is not None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._sent / AUDIO_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = np.zeros(AUDIO_SAMPLES, np.int16)
        if self._position is not None:
            part = self._speech[self._position : self._position + AUDIO_SAMPLES]
            chunk[: len(part)] = part
            self._position += AUDIO_SAMPLES
            if self._position >= len(self._speech):
                self._position = None
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._sent
        frame.time_base = AUDIO_TIME_BASE
        self._sent += AUDIO_SAMPLES
        return frame


def load_speech(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        chunks = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                  for f in resampler.resample(frame)]
    return np.concatenate(chunks)


@pytest.mark.timeout(120)
async def test_the_large_tile_follows_the_talker_once(mcu_server, tmp_path: Path) -> None:
    speech = load_speech(speech_wav(
        "Kính thưa các đồng chí, hôm nay chúng ta họp giao ban về công tác thi hành án dân sự "
        "của tháng mười một và kế hoạch của tháng mười hai.", tmp_path / "speech.wav"))
    server = await mcu_server(room_config(SITES, layout="1+5", width=WIDTH, height=HEIGHT))
    room = server.rooms["test"]
    voices = {site: SpeakingTrack(speech) for site in SITES}
    calls = {
        site: Call(url(server, "test", site), site_token(site),
                   video=ColourTrack(COLOURS[site], 320, 240, fps=15), audio=voices[site])
        for site in SITES
    }
    await asyncio.gather(*(call.connect() for call in calls.values()))
    big = load_layout(LAYOUTS / "1+5.toml").tiles[0].rect(WIDTH, HEIGHT)
    watcher = calls["hq"]
    floors: list[str | None] = []

    async def watch_floor() -> None:
        while True:
            if not floors or floors[-1] != room.floor:
                floors.append(room.floor)
            await asyncio.sleep(0.02)

    watching = asyncio.ensure_future(watch_floor())
    loop = asyncio.get_running_loop()
    try:
        await watcher.wait_video(10, timeout=20)
        await asyncio.sleep(1.5)
        # nobody has spoken: the chair is in the large tile
        assert room.floor is None
        assert colour_close(region_colour(watcher.latest_video, big), COLOURS["hq"])

        async def takes_large_tile(site: str) -> float:
            started = loop.time()
            voices[site].speak()
            while not colour_close(region_colour(watcher.latest_video, big), COLOURS[site]):
                assert loop.time() - started < 5, f"{site} never reached the large tile"
                await asyncio.sleep(0.05)
            return loop.time() - started

        assert await takes_large_tile("north") < 2.0
        assert room.floor == "north"
        await asyncio.sleep(len(speech) / AUDIO_RATE - 1.0)  # the rest of the sentence
        assert not voices["north"].speaking

        assert await takes_large_tile("south") < 2.0
        await asyncio.sleep(len(speech) / AUDIO_RATE)
        assert not voices["south"].speaking
        assert floors == [None, "north", "south"], f"the floor flickered: {floors}"
    finally:
        watching.cancel()
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


@pytest.mark.timeout(120)
async def test_operator_changes_layout_pins_and_chair_at_run_time(mcu_server, caplog) -> None:
    server = await mcu_server(room_config(SITES, width=WIDTH, height=HEIGHT))
    room = server.rooms["test"]
    calls = {
        site: Call(url(server, "test", site), site_token(site),
                   video=ColourTrack(COLOURS[site], 320, 240, fps=15),
                   audio=SpeakingTrack(np.zeros(0, np.int16)))
        for site in SITES
    }
    await asyncio.gather(*(call.connect() for call in calls.values()))
    watcher = calls["north"]
    loop = asyncio.get_running_loop()

    async def shows(rect: tuple[int, int, int, int], site: str) -> None:
        deadline = loop.time() + 5
        while not colour_close(region_colour(watcher.latest_video, rect), COLOURS[site]):
            assert loop.time() < deadline, f"{site} not shown at {rect}"
            await asyncio.sleep(0.05)

    try:
        await watcher.wait_video(10, timeout=20)
        grid = load_layout(LAYOUTS / "2x2.toml").tiles
        await shows(grid[3].rect(WIDTH, HEIGHT), "south")

        caplog.set_level(logging.INFO, logger="mcu.encoder")
        room.set_layout("1+5")
        big = load_layout(LAYOUTS / "1+5.toml").tiles[0].rect(WIDTH, HEIGHT)
        await shows(big, "hq")
        # all four sites share one encoder: one keyframe for everyone
        assert len(room.video.groups) == 1
        assert sum("keyframe forced (layout change)" in r.message for r in caplog.records) == 1

        room.set_pins({0: "centre"})
        await shows(big, "centre")
        room.set_pins({})
        room.set_chair("south")
        await shows(big, "south")
        with pytest.raises(Exception, match="no layout 'nine'"):
            room.set_layout("nine")
        with pytest.raises(Exception, match="no site 'ghost' to pin"):
            room.set_pins({0: "ghost"})
        assert room.layout_name == "1+5"
        # the sites never renegotiated: still one session each
        assert all(call.location for call in calls.values())
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


@pytest.mark.timeout(60)
async def test_a_sites_audio_level_header_is_heard(mcu_server) -> None:
    from aiortc.rtp import RtpPacket

    server = await mcu_server(room_config(SITES[:2], width=WIDTH, height=HEIGHT))
    call = Call(url(server, "test", "north"), site_token("north"),
                video=ColourTrack(COLOURS["north"], 320, 240, fps=15),
                audio=SpeakingTrack(np.zeros(0, np.int16)))
    await call.connect()
    try:
        room = server.rooms["test"]
        await call.wait_video(3, timeout=20)
        site = room.sites["north"]
        # aiortc's own sender sends the header with the voice flag off
        assert site.header_level_dbov is not None
        assert not site.says_voice(time.monotonic())
        receiver = next(t.receiver for t in site.pc.getTransceivers() if t.kind == "audio")
        packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=0, ssrc=1)
        packet.extensions.audio_level = (True, 20)
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
        assert site.says_voice(time.monotonic()) and site.header_level_dbov == -20.0
        assert not site.says_voice(time.monotonic() + 0.5), "only while fresh"
    finally:
        await call.hang_up()
