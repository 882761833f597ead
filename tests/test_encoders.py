"""Shared encoders end to end: one video encoder per group, keyframes for joiners and lost
pictures (throttled), profiles moved by the receiver's estimate, and shared listener audio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from mcu.dial import Call
from mcu.room import HIDDEN_REMB_BPS
from mcu.sources import ColourTrack, ToneTrack

from .analysis import tone_power
from .conftest import room_config, site_token, url
from .test_conference import COLOURS

NINE = ["hq", "north", "centre", "south", "east", "west", "hill", "coast", "delta"]
TWO_PROFILES = """
[profiles.low]
width = 160
height = 90
fps = 10
video_kbps = 150
audio_kbps = 24
"""


def colour(site: str) -> tuple[int, int, int]:
    return COLOURS.get(site, (128, 128, 128))


async def until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def video_receiver(call: Call) -> Any:
    pc: Any = call._pc
    return next(t.receiver for t in pc.getTransceivers() if t.kind == "video")


async def send_pli(call: Call) -> None:
    receiver = video_receiver(call)
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)


async def send_remb(call: Call, bps: int) -> None:
    receiver = video_receiver(call)
    ssrcs = [source.source for source in receiver.getSynchronizationSources()]
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=receiver._RTCRtpReceiver__rtcp_ssrc,
                            media_ssrc=0, fci=pack_remb_fci(bps, ssrcs))
    await receiver._send_rtcp(packet)


@pytest.mark.timeout(180)
async def test_nine_sites_share_one_video_encoder_and_listeners_share_one_mix(
        mcu_server) -> None:
    server = await mcu_server(room_config(NINE, layout="3x3", width=160, height=90, fps=10))
    room = server.rooms["test"]
    talkers = {"hq": 430.0, "north": 830.0}
    calls = {
        site: Call(url(server, "test", site), site_token(site),
                   video=ColourTrack(colour(site), 160, 120, fps=10),
                   audio=ToneTrack(talkers[site], 0.2) if site in talkers else ToneTrack(0, 0))
        for site in NINE
    }
    await asyncio.gather(*(call.connect() for call in calls.values()))
    try:
        await until(lambda: len(room.roster) == 9 and all(s.frames_in for s in room.roster),
                    40, "nine sites sending")
        await asyncio.gather(*(call.wait_video(5, timeout=30) for call in calls.values()))

        # one encoder, nine members, and it is what every site receives
        assert len(room.video.groups) == 1
        (group,) = room.video.groups.values()
        assert group.members == 9
        assert all((c.latest_video.width, c.latest_video.height) == (160, 90)
                   for c in calls.values() if c.latest_video is not None)

        # the two talkers have their own mix; the seven silent sites share one encoding
        await asyncio.sleep(2.0)
        assert {s: r for s, r in room._mixer.route.items() if r == "own"} == {
            "hq": "own", "north": "own"}
        assert sum(r == "shared" for r in room._mixer.route.values()) == 7
        before = (room._mixer.own_encodes, room._mixer.shared_encodes)
        await asyncio.sleep(1.0)
        own = room._mixer.own_encodes - before[0]
        shared = room._mixer.shared_encodes - before[1]
        assert shared <= own / 2 + 5, "one shared encoding per tick, two own ones"

        # a listener hears both talkers; each talker hears the other and not itself
        listener = calls["delta"].recent_audio(1.0)
        assert tone_power(listener, 430) > 0 and tone_power(listener, 830) > 0
        for talker, other in (("hq", "north"), ("north", "hq")):
            heard = calls[talker].recent_audio(1.0)
            assert tone_power(heard, talkers[talker]) < tone_power(heard, talkers[other]) / 1000
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


@pytest.mark.timeout(120)
async def test_joiners_get_a_keyframe_at_once_and_plis_are_throttled(mcu_server) -> None:
    server = await mcu_server(room_config(["hq", "north"], width=160, height=90, fps=10))
    room = server.rooms["test"]
    first = Call(url(server, "test", "hq"), site_token("hq"),
                 video=ColourTrack(colour("hq"), 160, 120, fps=10), audio=ToneTrack(0, 0))
    await first.connect()
    second = Call(url(server, "test", "north"), site_token("north"),
                  video=ColourTrack(colour("north"), 160, 120, fps=10), audio=ToneTrack(0, 0))
    try:
        await first.wait_video(10, timeout=20)
        (group,) = room.video.groups.values()
        await asyncio.sleep(1.5)  # past the first keyframe and the throttle window
        keyframes = group.keyframes

        # a new member: the very next encoded frame is a keyframe
        await second.connect()
        await until(lambda: group.members == 2, 10, "north to join the group")
        loop = asyncio.get_running_loop()
        joined = loop.time()
        await until(lambda: group.keyframes > keyframes, 2, "a keyframe for the joiner")
        assert loop.time() - joined <= 2 / 10 + 0.1, "within a frame interval (10 fps)"
        await second.wait_video(3, timeout=10)

        # ten picture-loss requests in a second give at most two keyframes
        await asyncio.sleep(1.2)
        keyframes, requests = group.keyframes, group.keyframe_requests
        for _ in range(10):
            await send_pli(second)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        assert group.keyframe_requests - requests == 10
        assert 1 <= group.keyframes - keyframes <= 2
        assert group.keyframes_throttled >= 8
    finally:
        await asyncio.gather(first.hang_up(), second.hang_up())


@pytest.mark.timeout(120)
async def test_a_starved_site_moves_to_a_lower_profile_and_back(mcu_server) -> None:
    config = room_config(["hq", "north"], width=320, height=180, fps=10, extra=TWO_PROFILES)
    server = await mcu_server(config)
    room = server.rooms["test"]
    calls = [Call(url(server, "test", site), site_token(site),
                  video=ColourTrack(colour(site), 160, 120, fps=10), audio=ToneTrack(0, 0))
             for site in ("hq", "north")]
    await asyncio.gather(*(call.connect() for call in calls))
    north = calls[1]
    stop = asyncio.Event()
    # under what reaches the site (its audio alone is 64 kbit/s): a link that cannot carry it
    rate = {"bps": 30_000}

    async def keep_reporting() -> None:
        while not stop.is_set():
            await send_remb(north, rate["bps"])
            await asyncio.sleep(0.2)

    try:
        await north.wait_video(5, timeout=20)
        # this site's link estimate is the one the test reports, not aiortc's own estimator
        video_receiver(north)._RTCRtpReceiver__remote_bitrate_estimator = None
        assert room.sites["north"].profile.name == "small"
        reporting = asyncio.ensure_future(keep_reporting())
        await until(lambda: room.sites["north"].profile.name == "low", 8, "the move to low")
        await until(lambda: north.latest_video is not None and north.latest_video.width == 160,
                    5, "low-profile pictures")
        assert room.sites["hq"].profile.name == "small", "the other site keeps its profile"
        assert len(room.video.groups) == 2

        rate["bps"] = 5_000_000
        await until(lambda: room.sites["north"].profile.name == "small", 25, "the move back")
        await until(lambda: north.latest_video is not None and north.latest_video.width == 320,
                    5, "small-profile pictures again")
        stop.set()
        await reporting
        assert [(c.before, c.after) for c in room.sites["north"].adaptive.history] == [
            ("small", "low"), ("low", "small")]
    finally:
        stop.set()
        await asyncio.gather(*(call.hang_up() for call in calls))


@pytest.mark.timeout(120)
async def test_a_site_dialling_again_starts_where_its_link_left_it(
        mcu_server, monkeypatch: pytest.MonkeyPatch) -> None:
    config = room_config(["hq", "north"], width=320, height=180, fps=10, extra=TWO_PROFILES)
    server = await mcu_server(config)
    room = server.rooms["test"]

    def dial(site: str) -> Call:
        return Call(url(server, "test", site), site_token(site),
                    video=ColourTrack(colour(site), 160, 120, fps=10), audio=ToneTrack(0, 0))

    hq, north = dial("hq"), dial("north")
    await asyncio.gather(hq.connect(), north.connect())
    stop = asyncio.Event()

    async def starve(call: Call) -> None:  # a link that carries less than the site's audio
        video_receiver(call)._RTCRtpReceiver__remote_bitrate_estimator = None
        while not stop.is_set():
            await send_remb(call, 30_000)
            await asyncio.sleep(0.2)

    again: Call | None = None
    try:
        await north.wait_video(5, timeout=20)
        reporting = asyncio.ensure_future(starve(north))
        await until(lambda: room.sites["north"].profile.name == "low", 8, "the move to low")
        stop.set()
        await reporting
        budget = room.sites["north"].uplink.bps
        await north.hang_up()
        await until(lambda: "north" not in room.sites, 5, "north to leave")

        # it dials again: low from its first picture, its upload budget as it was
        again = dial("north")
        await again.connect()
        assert room.sites["north"].profile.name == "low"
        assert room.sites["north"].uplink.bps == budget
        await again.wait_video(3, timeout=20)
        assert again.latest_video is not None and again.latest_video.width == 160
        # hq never left: it starts nowhere new and keeps its profile
        assert room.sites["hq"].profile.name == "small"

        # remembered only for a while: past it, a site starts at its own profile again
        await again.hang_up()
        await until(lambda: "north" not in room.sites, 5, "north to leave again")
        monkeypatch.setattr("mcu.room.LINK_MEMORY", 0.0)
        again = dial("north")
        await again.connect()
        assert room.sites["north"].profile.name == "small"
    finally:
        stop.set()
        await asyncio.gather(hq.hang_up(), north.hang_up(),
                             *([again.hang_up()] if again is not None else []))


@pytest.mark.timeout(120)
async def test_without_self_view_the_speaker_sees_the_previous_speaker(mcu_server,
                                                                         tmp_path) -> None:
    from mcu.layout import load_layout

    from .analysis import colour_close, region_colour
    from .conftest import LAYOUTS
    from .test_speaker_e2e import SpeakingTrack, load_speech

    speech = load_speech(speech_wav_for(tmp_path))
    sites = ["hq", "north", "centre"]
    server = await mcu_server(room_config(sites, layout="1+5", width=320, height=180,
                                          self_view=False))
    room = server.rooms["test"]
    voices = {site: SpeakingTrack(speech) for site in sites}
    calls = {site: Call(url(server, "test", site), site_token(site),
                        video=ColourTrack(colour(site), 320, 240, fps=15), audio=voices[site])
             for site in sites}
    await asyncio.gather(*(call.connect() for call in calls.values()))
    big = load_layout(LAYOUTS / "1+5.toml").tiles[0].rect(320, 180)

    def big_tile_of(viewer: str, shows: str) -> bool:
        frame = calls[viewer].latest_video
        return frame is not None and colour_close(region_colour(frame, big), colour(shows))

    try:
        await asyncio.gather(*(call.wait_video(5, timeout=20) for call in calls.values()))
        voices["north"].speak()
        await until(lambda: room.floor == "north", 10, "north to take the floor")
        # everyone else sees north; north, with no previous speaker yet, sees the chair
        await until(lambda: big_tile_of("hq", "north") and big_tile_of("centre", "north"), 5,
                    "the others to see north")
        await until(lambda: big_tile_of("north", "hq"), 5, "north to see the chair")
        await asyncio.sleep(len(speech) / 48000)
        voices["centre"].speak()
        await until(lambda: room.floor == "centre", 10, "centre to take the floor")
        await until(lambda: big_tile_of("centre", "north"), 5, "centre to see north")
        await until(lambda: big_tile_of("hq", "centre") and big_tile_of("north", "centre"), 5,
                    "the others to see centre")
        # never more than two canvases (shared and speaker's) per profile
        variants = {key.variant for key in room.video.groups}
        assert variants <= {"all", "speaker"}
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


def speech_wav_for(tmp_path):  # type: ignore[no-untyped-def]
    from mcu.media import speech_wav

    return speech_wav("Xin chào các đồng chí, hôm nay chúng ta họp giao ban toàn ngành.",
                      tmp_path / "speech.wav")


@pytest.mark.timeout(120)
async def test_sites_off_screen_are_not_decoded_until_they_speak(mcu_server, tmp_path) -> None:
    from .test_speaker_e2e import SpeakingTrack, load_speech

    speech = load_speech(speech_wav_for(tmp_path))
    sites = ["hq", "north", "centre", "south", "east"]
    server = await mcu_server(room_config(sites, layout="2x2", width=160, height=90, fps=10))
    room = server.rooms["test"]
    voices = {site: SpeakingTrack(speech) for site in sites}
    calls = {site: Call(url(server, "test", site), site_token(site),
                        video=ColourTrack(colour(site), 160, 120, fps=10), audio=voices[site])
             for site in sites}
    await asyncio.gather(*(call.connect() for call in calls.values()))
    try:
        # four tiles, five sites: the last in room order is off screen, its video paused
        await until(lambda: len(room.roster) == 5 and not room.sites["east"].receiving_video,
                    20, "east's video to be paused")
        east = room.sites["east"]
        await until(lambda: east.rembs_sent >= 2 and east.remb_sent_bps == HIDDEN_REMB_BPS, 5,
                    "low bitrate asked of east")
        frames = east.frames_in
        await asyncio.sleep(1.5)
        assert east.frames_in - frames <= 2, "nothing decoded while off screen"
        assert all(room.sites[s].receiving_video for s in sites[:4])

        # east speaks: it is voice-switched on screen, resumed with a keyframe request
        voices["east"].speak()
        await until(lambda: "east" in room.visible, 10, "east to come on screen")
        await until(lambda: east.receiving_video and east.plis_sent >= 1, 5, "east resumed")
        frames = east.frames_in
        await until(lambda: east.frames_in >= frames + 5, 10, "east's video decoded again")
        assert sum(not room.sites[s].receiving_video for s in sites) == 1
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))
