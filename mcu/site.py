"""One site's session: its peer connection, the drains of its inbound tracks, its outgoing tracks.

A site is keyed by its configured id. Inbound video lands in a newest-wins slot and inbound audio in
a short ring; the room's worker threads read both. The drains only move frame references: aiortc
has already decoded the frames in its own threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .config import Profile, SiteConfig
from . import jitter
from .bitrate import AdaptiveProfile
from .sdp import first_codec, ssrcs
from .stats import SiteStats
from .tasks import stop_tasks
from .tracks import EncodedAudioTrack, EncodedVideoTrack, answer_with
from .uplink import FLOOR_BPS, UplinkBudget, UplinkCounter

logger = logging.getLogger(__name__)

AUDIO_RING_FRAMES = 10  # 200 ms of 20 ms frames; older audio is dropped, never queued
DECODE_WATCHDOG = 1.0  # seconds without a decoded frame before a keyframe is requested
VOICE_FLAG_FRESH = 0.1  # seconds an audio-level header's voice flag counts
RTP_HEADER_BYTES = 12
UPLINK_DOWN = 0.85  # a budget under this share of the last one sent is passed on at once
UPLINK_UP = 1.25  # a budget over this share of it, too; anything between keeps the last one


class _QuietEstimator:
    """aiortc's receive-side bitrate estimator, its estimates noted on the site, never sent."""

    def __init__(self, inner: Any, site: Site) -> None:
        self._inner = inner
        self._site = site

    def add(self, **packet: Any) -> None:
        estimate = self._inner.add(**packet)
        if estimate is not None:
            self._site.delay_estimate_bps = float(estimate[0])


def _before_rtp(receiver: RTCRtpReceiver, note: Callable[[Any], None]) -> None:
    """Show every RTP packet of one aiortc receiver to `note` before aiortc handles it (this
    receiver object only)."""
    hooked: Any = receiver
    handle_rtp = receiver._handle_rtp_packet

    async def on_rtp(packet: Any, arrival_time_ms: int) -> None:
        note(packet)
        await handle_rtp(packet, arrival_time_ms)

    hooked._handle_rtp_packet = on_rtp


@dataclass(frozen=True)
class VideoSlot:
    """The newest decoded frame of a site and when it arrived (monotonic seconds)."""

    frame: av.VideoFrame
    arrived: float


class Site:
    """A connected site. Created per dial; the room replaces it when the site dials again."""

    def __init__(
        self,
        room_id: str,
        config: SiteConfig,
        adaptive: AdaptiveProfile,
        ice_servers: list[RTCIceServer],
        uplink: UplinkBudget | None = None,
    ) -> None:
        self.room_id = room_id
        self.config = config
        self.adaptive = adaptive  # the profile it receives now, moved by the room's rate control
        self.session_id = secrets.token_urlsafe(12)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        loop = asyncio.get_running_loop()
        self.video_out = EncodedVideoTrack(loop)
        self.audio_out = EncodedAudioTrack(loop)
        self.video_slot: VideoSlot | None = None
        self.audio_ring: collections.deque[av.AudioFrame] = collections.deque(
            maxlen=AUDIO_RING_FRAMES
        )
        self.frames_in = 0
        self.audio_frames_in = 0
        self.level_dbov = -127.0  # input level of the last mixed tick
        self.header_level_dbov: float | None = None  # RFC 6464 level the site last sent
        self.voice_flag_at = -1e9  # when its audio-level header last marked voice
        self.codec: str | None = None  # the video codec it receives: "vp8" or "h264"
        self.on_picture_loss: Callable[[Site, str], None] | None = None
        # what the site's receiver reports about our video (RTCP REMB and receiver reports)
        self.remb_bps: float | None = None
        self.loss_fraction: float | None = None
        self.rtt: float | None = None
        self.receiving_video = True
        self.plis_sent = 0
        self.watchdog_requests = 0
        self.keyframe_requests = 0  # picture-loss requests the site sent us
        self.stats: SiteStats | None = None  # the latest snapshot, refreshed by the room
        self.rembs_sent = 0
        self.remb_sent_bps: int | None = None  # the last budget sent to the site
        # the video rate the site is asked for (REMB), from what the MCU sees of its stream
        self.uplink = uplink if uplink is not None else UplinkBudget(
            max(FLOOR_BPS, adaptive.profile.video_kbps * 1000))
        self.uplink_counter = UplinkCounter(time.monotonic())
        self.delay_estimate_bps: float | None = None  # aiortc's receiver estimate, not sent
        self._video_sender: RTCRtpSender | None = None
        self._video_ssrcs: list[int] = []  # the site's video SSRCs, for PLI and REMB
        self._video_receiver: RTCRtpReceiver | None = None
        self.joined = time.monotonic()
        self.closed = asyncio.Event()
        # the site closed its end cleanly (a DTLS close, as a browser sends when its page
        # closes): a hang-up, where a failed connection is a loss
        self.ended_by_peer = False
        self._closing = False  # close() was called here
        self._drains: list[asyncio.Task[None]] = []

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def profile(self) -> Profile:
        return self.adaptive.profile

    def __repr__(self) -> str:
        return f"Site(room={self.room_id}, site={self.id}, session={self.session_id})"

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer, attach our outgoing tracks and return the answer with all candidates.

        Raises whatever aiortc raises for an offer it cannot use; the caller closes the site.
        """
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            drain = self._drain_video if track.kind == "video" else self._drain_audio
            self._drains.append(asyncio.ensure_future(drain(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("room=%s site=%s connection %s", self.room_id, self.id,
                        pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                # aiortc closes the connection itself when the remote's DTLS close arrives
                self.ended_by_peer = pc.connectionState == "closed" and not self._closing
                self.closed.set()
            elif pc.connectionState == "connected":
                # the budget at once: a sender starts at its own rate until told otherwise
                self._spawn(self.send_remb(self.uplink.bps))

        answer = await answer_with(pc, offer_sdp, self.video_out, self.audio_out)
        self._video_ssrcs = ssrcs(offer_sdp, "video")
        self.codec = first_codec(answer, "video")
        for transceiver in pc.getTransceivers():
            if transceiver.sender.track is self.video_out:
                self._hook_video_sender(transceiver.sender)
            if transceiver.kind == "video":
                self._video_receiver = transceiver.receiver
                self._hook_video_receiver(transceiver.receiver)
            if transceiver.kind == "audio":
                self._hook_audio_receiver(transceiver.receiver)
            jitter.install(transceiver.receiver, transceiver.kind)
        return answer

    def _hook_audio_receiver(self, receiver: RTCRtpReceiver) -> None:
        """Note the voice-activity flag of the RTP audio-level header (RFC 6464) when the site
        sends one: a site whose own voice detector says "voice" counts as talking."""

        def note(packet: Any) -> None:
            level = packet.extensions.audio_level
            if level is not None:
                self.header_level_dbov = -float(level[1])
                if level[0]:
                    self.voice_flag_at = time.monotonic()

        _before_rtp(receiver, note)

    def _hook_video_receiver(self, receiver: RTCRtpReceiver) -> None:
        """Count the site's video packets for its uplink budget, and keep aiortc's delay-based
        estimate to ourselves: the MCU sends one REMB of its own (`steer_uplink`), which would
        otherwise be overwritten by aiortc's every second."""
        retransmissions = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {})

        def note(packet: Any) -> None:
            self.uplink_counter.add(packet.ssrc, packet.sequence_number,
                                    len(packet.payload) + RTP_HEADER_BYTES,
                                    packet.ssrc in retransmissions)

        _before_rtp(receiver, note)
        estimator = getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", None)
        if estimator is not None:
            hooked: Any = receiver
            hooked._RTCRtpReceiver__remote_bitrate_estimator = _QuietEstimator(estimator, self)

    def says_voice(self, now: float) -> bool:
        """Whether the site's own audio-level header marked voice in the last 100 ms."""
        return now - self.voice_flag_at < VOICE_FLAG_FRESH

    def _hook_video_sender(self, sender: RTCRtpSender) -> None:
        """Route the site's feedback on our video to the room.

        On the pre-encoded path aiortc acts on neither PLI/FIR nor REMB by itself, so its two
        entry points are wrapped on this sender object only.
        """
        self._video_sender = sender
        hooked: Any = sender
        handle_rtcp = sender._handle_rtcp_packet

        def picture_lost() -> None:
            self.keyframe_requests += 1
            if self.on_picture_loss is not None:
                self.on_picture_loss(self, "PLI")

        async def on_rtcp(packet: Any) -> None:
            self._note_feedback(packet, sender)
            await handle_rtcp(packet)

        hooked._send_keyframe = picture_lost
        hooked._handle_rtcp_packet = on_rtcp

    def _note_feedback(self, packet: Any, sender: RTCRtpSender) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                if sender._ssrc in ssrcs:
                    self.remb_bps = float(bitrate)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    self.loss_fraction = report.fraction_lost / 256
            rtt = getattr(sender, "_RTCRtpSender__rtt", None)
            self.rtt = float(rtt) if rtt is not None else None

    def request_video(self, on: bool, reason: str) -> None:
        """Receive (and so decode) the site's video or not; asks for a keyframe when resuming."""
        receiver = self._video_receiver
        if receiver is None or on == self.receiving_video:
            return
        self.receiving_video = on
        hooked: Any = receiver
        hooked._enabled = on  # aiortc drops RTP before its jitter buffer and decoder when False
        logger.info("room=%s site=%s video %s (%s)", self.room_id, self.id,
                    "resumed" if on else "paused", reason)
        if on:
            for ssrc in self._remote_video_ssrcs():
                self._spawn(receiver._send_rtcp_pli(ssrc))
                self.plis_sent += 1

    def _remote_video_ssrcs(self) -> list[int]:
        """The SSRCs of the site's video: those seen lately, else those its offer announced
        (aiortc forgets sources it has not heard from for 10 s, as with a paused receiver)."""
        receiver = self._video_receiver
        seen = [s.source for s in receiver.getSynchronizationSources()] if receiver else []
        for ssrc in seen:
            if ssrc not in self._video_ssrcs:
                self._video_ssrcs.append(ssrc)
        return seen or self._video_ssrcs

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a short RTCP send owned by this site (finished ones are forgotten)."""
        self._drains = [task for task in self._drains if not task.done()]
        self._drains.append(asyncio.ensure_future(coroutine))

    def tune_receiving(self) -> None:
        """Fit the wait for resent video packets to the site's round trip (`jitter.tune`)."""
        if self._video_receiver is not None:
            jitter.tune(self._video_receiver, self.rtt)

    def watch_decoding(self, now: float) -> None:
        """The decode watchdog: video that has not decoded for `DECODE_WATCHDOG` seconds (lost
        packets, a broken reference) gets a keyframe request; the tile keeps the last good frame
        meanwhile. Called about once a second, so at most one request per second."""
        slot = self.video_slot
        receiver = self._video_receiver
        if not self.receiving_video or slot is None or receiver is None:
            return
        if now - slot.arrived < DECODE_WATCHDOG:
            return
        self.watchdog_requests += 1
        if self.watchdog_requests == 1 or self.watchdog_requests % 30 == 0:
            logger.info("room=%s site=%s no decodable video for %.1f s: keyframe requested",
                        self.room_id, self.id, now - slot.arrived)
        for ssrc in self._remote_video_ssrcs():
            self._spawn(receiver._send_rtcp_pli(ssrc))
            self.plis_sent += 1

    async def steer_uplink(self, now: float, cap_bps: int | None = None) -> int:
        """Judge the site's video over the last interval and send it its budget by REMB (no
        more than `cap_bps`, for a site nobody sees). Called once a second.

        Small moves are not passed on: some encoders restart, with a keyframe, whenever the
        requested rate changes by 10 % (aiortc's VP8 does), so the site hears a new figure only
        when the budget falls below `UPLINK_DOWN` or rises past `UPLINK_UP` of the last one.
        """
        budget = self.uplink.update(self.uplink_counter.read(now), self.delay_estimate_bps)
        if cap_bps is not None:
            budget = min(budget, cap_bps)
        told = self.remb_sent_bps
        if told is not None and UPLINK_DOWN * told <= budget <= UPLINK_UP * told:
            budget = told
        if budget != told:
            logger.info("room=%s site=%s uplink budget %d kbit/s (%s)", self.room_id, self.id,
                        budget // 1000, "not on screen" if cap_bps == budget
                        else self.uplink.reason)
        await self.send_remb(budget)
        return budget

    async def send_remb(self, bps: int) -> None:
        """Ask the site to send its video at no more than `bps`."""
        receiver = self._video_receiver
        rtcp_ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
        if receiver is None or rtcp_ssrc is None:
            return
        sources = self._remote_video_ssrcs()
        if sources:
            packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                    fci=pack_remb_fci(bps, sources))
            await receiver._send_rtcp(packet)
            self.rembs_sent += 1
            self.remb_sent_bps = bps

    async def _drain_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.VideoFrame)
            self.video_slot = VideoSlot(frame, time.monotonic())
            self.frames_in += 1
            if self.frames_in == 1:
                logger.info("room=%s site=%s first video frame %dx%d", self.room_id, self.id,
                            frame.width, frame.height)

    async def _drain_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            self.audio_ring.append(frame)
            self.audio_frames_in += 1

    async def close(self) -> None:
        """Hang up: stop our tracks and drains and close the peer connection."""
        self._closing = True
        self.video_out.stop()
        self.audio_out.stop()
        await self.pc.close()
        await stop_tasks(self._drains)
        self._drains.clear()
        self.video_slot = None
        self.audio_ring.clear()
        self.closed.set()
