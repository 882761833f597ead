"""One site's statistics, taken once a second: traffic, loss, jitter, round trip, frame rates.

`snapshot()` reads the site's peer connection (aiortc `getStats()`) and the site's own counters,
and turns the cumulative figures into rates against the previous snapshot. The arithmetic lives
in plain functions (`read_inbound`, `read_report`, `derive`) so it is tested without a network.

What aiortc 1.16 reports, and how it is read here:
- `transport`: bytes and packets sent and received on the DTLS transport (all SRTP and SRTCP of
  the bundle). Every sender and receiver adds the same entry, so the merged report holds one per
  transport; the bytes are summed over them.
- `inbound-rtp`: one per receiver, for the RTP the site sends us. `jitter` is RFC 3550's
  interarrival jitter in RTP timestamp units of the stream's clock (90 kHz for VP8 and H.264,
  48 kHz for Opus, 8 kHz for PCMU/PCMA), not seconds. The entry's id names the receiver, not
  the SSRC, so once the site retransmits over RTX the RTX stream's figures replace the media
  stream's (https://github.com/aiortc/aiortc/pull/1433 review). The receivers' per-SSRC
  statistics are therefore read directly when aiortc exposes them, RTX streams left out.
- `outbound-rtp`: packets and bytes per sender (not used: the transport counts include RTCP).
- `remote-inbound-rtp`: what the site's receiver reports about our streams, `roundTripTime`
  in seconds, or None until a receiver report echoes one of our sender reports.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from .mixer import TALK_THRESHOLD_DBOV

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpReceiver

    from .site import Site

logger = logging.getLogger(__name__)

SPEAKING_DBOV = TALK_THRESHOLD_DBOV  # the level above which a site counts as speaking
DEFAULT_CLOCK_HZ = {"video": 90000, "audio": 48000}  # RTP clocks of VP8/H.264 and Opus
_RTPMAP_CLOCK = re.compile(r"^a=rtpmap:(\d+) [^/\s]+/(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class SiteStats:
    """A site at one moment. Rates cover the time since the previous snapshot."""

    at: float  # monotonic seconds
    bytes_in: int  # received from the site over its transport, since it joined
    bytes_out: int  # sent to the site over its transport, since it joined
    kbps_in: float
    kbps_out: float
    packets_lost: int  # RTP packets from the site that never arrived (audio and video)
    jitter_seconds: float | None  # interarrival jitter of its video (of its audio without one)
    rtt_seconds: float | None  # round trip to the site, from its receiver reports
    frames_in: int  # video frames decoded from the site since it joined
    frames_out: int  # encoded pictures its video sender took from its track since it joined
    fps_in: float
    fps_out: float
    speaking: bool  # holds the floor, or its level is above SPEAKING_DBOV
    profile: str  # the profile it receives now
    state: str  # the peer connection's connectionState: "connected", "failed", ...


@dataclass(frozen=True)
class InboundStream:
    """One SSRC the site sends us, as its receiver counts it."""

    kind: str  # "audio" or "video"
    packets_lost: int  # RFC 3550 cumulative number of packets lost (may step back a little)
    jitter: int  # RTP timestamp units
    clock_hz: int


@dataclass(frozen=True)
class PeerReading:
    """The peer-connection figures of one snapshot."""

    bytes_in: int
    bytes_out: int
    packets_lost: int
    jitter_seconds: float | None
    rtt_seconds: float | None


def clock_rates(sdp: str | None) -> dict[str, int]:
    """RTP clock rate of the first codec of each media section of `sdp`, by kind."""
    rates = dict(DEFAULT_CLOCK_HZ)
    if not sdp:
        return rates
    kind: str | None = None
    first: str | None = None
    seen: set[str] = set()
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            kind = parts[0] if parts else None
            first = parts[3] if len(parts) > 3 else None
            continue
        match = _RTPMAP_CLOCK.match(line)
        if kind and kind not in seen and match and match.group(1) == first:
            rates[kind] = int(match.group(2))
            seen.add(kind)
    return rates


def read_inbound(
    report: Mapping[str, Any], receivers: Iterable[RTCRtpReceiver], sdp: str | None
) -> list[InboundStream]:
    """The media streams the site sends us, RTX streams excluded.

    Taken from each receiver's per-SSRC statistics when aiortc has them (see the module
    docstring for why); otherwise from the report's `inbound-rtp` entries, whose clock rate is
    then that of the negotiated codec of their kind.
    """
    streams: list[InboundStream] = []
    direct = True
    for receiver in receivers:
        per_ssrc = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
        rtx = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", None)
        if not isinstance(per_ssrc, dict) or not isinstance(rtx, dict):
            direct = False
            break
        if receiver.track is None:
            continue  # no remote description yet, so no RTP either
        kind = receiver.track.kind
        for ssrc, stream in list(per_ssrc.items()):
            if ssrc in rtx:
                continue
            clock_hz = int(getattr(stream, "_clockrate", 0)) or DEFAULT_CLOCK_HZ.get(kind, 90000)
            streams.append(InboundStream(kind, int(stream.packets_lost), int(stream.jitter),
                                         clock_hz))
    if direct:
        return streams

    rates = clock_rates(sdp)
    return [
        InboundStream(entry.kind, int(entry.packetsLost), int(entry.jitter),
                      rates.get(entry.kind, 90000))
        for entry in report.values()
        if isinstance(entry, RTCInboundRtpStreamStats)
    ]


def read_report(
    report: Mapping[str, Any], inbound: Iterable[InboundStream], fallback_rtt: float | None
) -> PeerReading:
    """Sum and convert what one `getStats()` report and the inbound streams say."""
    bytes_in = bytes_out = 0
    rtt: dict[str, float] = {}
    for entry in report.values():
        if isinstance(entry, RTCTransportStats):
            bytes_in += int(entry.bytesReceived)
            bytes_out += int(entry.bytesSent)
        elif isinstance(entry, RTCRemoteInboundRtpStreamStats) and entry.roundTripTime is not None:
            rtt[entry.kind] = float(entry.roundTripTime)

    # loss counts every stream; jitter is the video's, the audio's for a site without video
    streams = list(inbound)
    lost = sum(max(0, s.packets_lost) for s in streams)
    jitter: float | None = None
    for kind in ("video", "audio"):
        of_kind = [s.jitter / s.clock_hz for s in streams if s.kind == kind and s.clock_hz > 0]
        if of_kind:
            jitter = max(of_kind)
            break

    # aiortc's estimate can dip a few microseconds below zero on loopback (DLSR is in 1/65536 s)
    round_trip = rtt.get("video", rtt.get("audio", fallback_rtt))
    if round_trip is not None:
        round_trip = max(0.0, round_trip)
    return PeerReading(bytes_in, bytes_out, lost, jitter, round_trip)


def is_speaking(site_id: str, level_dbov: float, floor: str | None) -> bool:
    return site_id == floor or level_dbov > SPEAKING_DBOV


def derive(
    previous: SiteStats | None,
    *,
    at: float,
    joined: float,
    reading: PeerReading,
    frames_in: int,
    frames_out: int,
    speaking: bool,
    profile: str,
    state: str,
) -> SiteStats:
    """A snapshot from the counters read at `at` and the previous snapshot.

    Without a previous snapshot (or after one from another session, whose counters were
    higher) the rates run from `joined`, when every counter was zero. Packets lost never
    decrease from one snapshot to the next: RFC 3550's cumulative figure steps back when
    duplicates arrive, which a counter must not do.
    """
    base_at, base = joined, (0, 0, 0, 0)
    if previous is not None:
        counters = (previous.bytes_in, previous.bytes_out, previous.frames_in,
                    previous.frames_out)
        now = (reading.bytes_in, reading.bytes_out, frames_in, frames_out)
        if all(b <= c for b, c in zip(counters, now)):
            base_at, base = previous.at, counters
    seconds = at - base_at
    lost = reading.packets_lost
    if previous is not None and base_at == previous.at:
        lost = max(lost, previous.packets_lost)

    if seconds > 0:
        kbps_in = (reading.bytes_in - base[0]) * 8 / 1000 / seconds
        kbps_out = (reading.bytes_out - base[1]) * 8 / 1000 / seconds
        fps_in = (frames_in - base[2]) / seconds
        fps_out = (frames_out - base[3]) / seconds
    elif previous is not None:
        kbps_in, kbps_out = previous.kbps_in, previous.kbps_out
        fps_in, fps_out = previous.fps_in, previous.fps_out
    else:
        kbps_in = kbps_out = fps_in = fps_out = 0.0

    return SiteStats(
        at=at,
        bytes_in=reading.bytes_in,
        bytes_out=reading.bytes_out,
        kbps_in=kbps_in,
        kbps_out=kbps_out,
        packets_lost=lost,
        jitter_seconds=reading.jitter_seconds,
        rtt_seconds=reading.rtt_seconds,
        frames_in=frames_in,
        frames_out=frames_out,
        fps_in=fps_in,
        fps_out=fps_out,
        speaking=speaking,
        profile=profile,
        state=state,
    )


async def read_peer(pc: RTCPeerConnection, fallback_rtt: float | None) -> PeerReading:
    """Traffic, loss, jitter and round trip of one peer connection."""
    report = await pc.getStats()
    sdp = pc.localDescription.sdp if pc.localDescription is not None else None
    inbound = read_inbound(report, pc.getReceivers(), sdp)
    return read_report(report, inbound, fallback_rtt)


async def snapshot(site: Site, previous: SiteStats | None, floor: str | None = None) -> SiteStats:
    """The site now. `floor` is the room's active speaker.

    `fps_out` counts the encoded pictures the site's video sender took from its track: each
    `av.Packet` our encoders make is one whole picture (no B-frames, no alternate reference
    frames), so this is the frame rate the site is sent, whatever the number of RTP packets
    per picture. Pictures dropped with a sender backlog are not counted.
    """
    reading = await read_peer(site.pc, site.rtt)

    # the site's own counters are read in the same step as the clock, right after the report
    return derive(
        previous,
        at=time.monotonic(),
        joined=site.joined,
        reading=reading,
        frames_in=site.frames_in,
        frames_out=site.video_out.delivered,
        speaking=is_speaking(site.id, site.level_dbov, floor),
        profile=site.profile.name,
        state=site.pc.connectionState,
    )
