"""Site statistics: the arithmetic on made-up aiortc reports, then two real sites on loopback."""

from __future__ import annotations

import asyncio
import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from mcu.dial import Call
from mcu.sources import ColourTrack, ToneTrack
from mcu.stats import (
    InboundStream,
    PeerReading,
    SiteStats,
    clock_rates,
    derive,
    is_speaking,
    read_inbound,
    read_report,
    snapshot,
)

from .conftest import room_config, site_token, url

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

ANSWER = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 0 96
a=rtpmap:96 opus/48000/2
a=rtpmap:0 PCMU/8000
m=video 9 UDP/TLS/RTP/SAVPF 97 98
a=rtpmap:97 VP8/90000
a=rtpmap:98 rtx/90000
"""


def transport(entry_id: str, received: int, sent: int) -> RTCTransportStats:
    return RTCTransportStats(timestamp=NOW, type="transport", id=entry_id, packetsSent=0,
                             packetsReceived=0, bytesSent=sent, bytesReceived=received,
                             iceRole="controlled", dtlsState="connected")


def remote_inbound(kind: str, rtt: float | None) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=NOW, type="remote-inbound-rtp", id=f"remote-inbound-rtp_{kind}", ssrc=1,
        kind=kind, transportId="t", packetsReceived=10, packetsLost=0, jitter=0,
        roundTripTime=rtt, fractionLost=0)  # type: ignore[arg-type]


def inbound(kind: str, lost: int, jitter: int) -> RTCInboundRtpStreamStats:
    return RTCInboundRtpStreamStats(timestamp=NOW, type="inbound-rtp", id=f"inbound-rtp_{kind}",
                                    ssrc=7, kind=kind, transportId="t", packetsReceived=100,
                                    packetsLost=lost, jitter=jitter)


# --- pure parts -------------------------------------------------------------------------------

def test_clock_rates_follow_the_first_codec_of_each_section() -> None:
    # the audio section lists PCMU (static type 0) first, with an rtpmap line for it
    assert clock_rates(ANSWER) == {"audio": 8000, "video": 90000}
    assert clock_rates(None) == {"audio": 48000, "video": 90000}


def test_report_sums_transports_and_converts_jitter_to_seconds() -> None:
    report = {
        "transport_a": transport("transport_a", 1000, 4000),
        "transport_b": transport("transport_b", 500, 250),
        "outbound-rtp_1": RTCOutboundRtpStreamStats(
            timestamp=NOW, type="outbound-rtp", id="outbound-rtp_1", ssrc=3, kind="video",
            transportId="t", packetsSent=5, bytesSent=99999, trackId="x"),
        "remote-inbound-rtp_audio": remote_inbound("audio", 0.030),
        "remote-inbound-rtp_video": remote_inbound("video", -0.00001),
    }
    streams = [InboundStream("video", 4, 1800, 90000), InboundStream("audio", 2, 960, 48000),
               InboundStream("audio", -1, 0, 48000)]
    reading = read_report(report, streams, fallback_rtt=0.5)
    assert (reading.bytes_in, reading.bytes_out) == (1500, 4250)
    assert reading.packets_lost == 6  # a stream reporting -1 (duplicates) adds nothing
    assert reading.jitter_seconds == pytest.approx(0.020)  # 1800 / 90000, the video's
    assert reading.rtt_seconds == 0.0  # the video's estimate, a hair below zero, clamped

    # a site sending audio only: its audio jitter, 960 / 48000; round trip from the audio
    audio_only = read_report({"r": remote_inbound("audio", 0.030)},
                             [InboundStream("audio", 0, 960, 48000)], fallback_rtt=None)
    assert audio_only.jitter_seconds == pytest.approx(0.020)
    assert audio_only.rtt_seconds == pytest.approx(0.030)

    # no receiver report with an RTT yet: the site's own estimate
    assert read_report({"r": remote_inbound("video", None)}, [], 0.25).rtt_seconds == 0.25
    assert read_report({}, [], None) == PeerReading(0, 0, 0, None, None)


def test_inbound_streams_leave_out_retransmissions() -> None:
    media = SimpleNamespace(packets_lost=3, jitter=450, _clockrate=90000)
    rtx = SimpleNamespace(packets_lost=0, jitter=99999, _clockrate=90000)
    receiver = SimpleNamespace(track=SimpleNamespace(kind="video"))
    setattr(receiver, "_RTCRtpReceiver__remote_streams", {1111: media, 2222: rtx})  # noqa: B010
    setattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {2222: 1111})  # noqa: B010
    # a receiver still waiting for the remote description has no track and no streams
    waiting = SimpleNamespace(track=None)
    setattr(waiting, "_RTCRtpReceiver__remote_streams", {})  # noqa: B010
    setattr(waiting, "_RTCRtpReceiver__rtx_ssrc", {})  # noqa: B010
    streams = read_inbound({}, [receiver, waiting], None)  # type: ignore[list-item]
    assert streams == [InboundStream("video", 3, 450, 90000)]


def test_inbound_streams_fall_back_to_the_report() -> None:
    # receivers without aiortc's per-SSRC tables: the report's entries, clocked by the answer
    report = {"a": inbound("audio", 5, 80), "v": inbound("video", 1, 900)}
    receivers = [SimpleNamespace(track=SimpleNamespace(kind="audio"))]
    streams = read_inbound(report, receivers, ANSWER)  # type: ignore[arg-type]
    assert sorted(streams, key=lambda s: s.kind) == [
        InboundStream("audio", 5, 80, 8000), InboundStream("video", 1, 900, 90000)]


def stats(at: float, bytes_in: int, bytes_out: int, frames_in: int, frames_out: int,
          lost: int) -> SiteStats:
    return SiteStats(at=at, bytes_in=bytes_in, bytes_out=bytes_out, kbps_in=1.0, kbps_out=2.0,
                     packets_lost=lost, jitter_seconds=None, rtt_seconds=None,
                     frames_in=frames_in, frames_out=frames_out, fps_in=3.0, fps_out=4.0,
                     speaking=False, profile="small", state="connected")


def derived(previous: SiteStats | None, at: float, reading: PeerReading, frames_in: int,
            frames_out: int) -> SiteStats:
    return derive(previous, at=at, joined=100.0, reading=reading, frames_in=frames_in,
                  frames_out=frames_out, speaking=True, profile="small", state="connected")


def test_rates_run_from_the_previous_snapshot() -> None:
    previous = stats(110.0, 10_000, 50_000, 150, 140, lost=9)
    now = derived(previous, 112.0, PeerReading(35_000, 150_000, 7, 0.01, 0.02), 180, 170)
    assert now.kbps_in == pytest.approx(25_000 * 8 / 1000 / 2)  # 100 kbit/s
    assert now.kbps_out == pytest.approx(100_000 * 8 / 1000 / 2)  # 400 kbit/s
    assert now.fps_in == pytest.approx(15.0) and now.fps_out == pytest.approx(15.0)
    assert now.packets_lost == 9  # the cumulative figure stepped back from 9 to 7: held
    assert (now.bytes_in, now.frames_out, now.jitter_seconds) == (35_000, 170, 0.01)


def test_rates_run_from_the_join_without_a_usable_previous_snapshot() -> None:
    reading = PeerReading(40_000, 80_000, 2, None, None)
    first = derived(None, 104.0, reading, 60, 30)
    assert first.kbps_in == pytest.approx(40_000 * 8 / 1000 / 4)
    assert first.fps_out == pytest.approx(30 / 4)

    # a snapshot of an earlier session with higher counters is not a base
    stale = stats(103.0, 900_000, 900_000, 9000, 9000, lost=50)
    fresh = derived(stale, 104.0, reading, 60, 30)
    assert fresh.kbps_in == pytest.approx(first.kbps_in)
    assert fresh.packets_lost == 2

    # no time elapsed: the previous rates stand
    same = derived(stats(104.0, 40_000, 80_000, 60, 30, 2), 104.0, reading, 60, 30)
    assert (same.kbps_in, same.fps_out) == (1.0, 4.0)


def test_a_site_speaks_when_loud_or_holding_the_floor() -> None:
    assert is_speaking("a", -20.0, floor=None)
    assert is_speaking("a", -90.0, floor="a")  # the floor holder pausing for breath
    assert not is_speaking("a", -50.0, floor="b")  # at the threshold is not above it


# --- real sites --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
async def test_snapshots_of_two_real_sites(mcu_server: Any) -> None:
    server = await mcu_server(room_config(["a", "b"], fps=15))
    room = server.rooms["test"]
    calls = {
        "a": Call(url(server, "test", "a"), site_token("a"),
                  video=ColourTrack((82, 90, 240), 320, 240, fps=15),
                  audio=ToneTrack(440.0, amplitude=0.2)),
        "b": Call(url(server, "test", "b"), site_token("b"),
                  video=ColourTrack((145, 54, 34), 320, 240, fps=15),
                  audio=ToneTrack(440.0, amplitude=0.0)),
    }
    await asyncio.gather(*(call.connect() for call in calls.values()))
    try:
        await asyncio.gather(*(call.wait_video(10, timeout=15) for call in calls.values()))
        await asyncio.sleep(1.5)  # receiver reports with round trips, speaker detection

        sites = {site_id: room.sites[site_id] for site_id in calls}
        first = {s: await snapshot(site, None, room.floor) for s, site in sites.items()}
        sent_before = {s: (await call.stats()).bytes_out for s, call in calls.items()}
        seen_before = {s: call.video_frames for s, call in calls.items()}
        await asyncio.sleep(2.0)
        second = {s: await snapshot(site, first[s], room.floor) for s, site in sites.items()}
        sent_after = {s: (await call.stats()).bytes_out for s, call in calls.items()}
        seen_after = {s: call.video_frames for s, call in calls.items()}

        for s in calls:
            one, two = first[s], second[s]
            seconds = two.at - one.at
            assert two.bytes_in > one.bytes_in > 0 and two.bytes_out > one.bytes_out > 0
            assert two.kbps_in > 0 and two.kbps_out > 0
            # the MCU receives what the site sent over the same two seconds
            site_kbps = (sent_after[s] - sent_before[s]) * 8 / 1000 / seconds
            assert two.kbps_in == pytest.approx(site_kbps, rel=0.25), s
            assert two.fps_in == pytest.approx(15, abs=3), s
            # what the MCU sent is what the site decoded
            site_fps = (seen_after[s] - seen_before[s]) / seconds
            assert two.fps_out == pytest.approx(site_fps, abs=3), s
            assert two.fps_out == pytest.approx(15, abs=3), s
            assert two.rtt_seconds is not None and 0 <= two.rtt_seconds < 0.5, s
            assert two.jitter_seconds is not None and 0 <= two.jitter_seconds < 0.1, s
            assert two.packets_lost == 0, s  # loopback, nothing dropped
            assert (two.profile, two.state) == ("small", "connected")

        # a plays a tone well above -50 dBov; b sends silence and does not hold the floor
        assert sites["a"].level_dbov > -50 >= sites["b"].level_dbov
        assert room.floor != "b"
        assert second["a"].speaking and not second["b"].speaking
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))
