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
from dataclasses import dataclass

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .config import Profile, SiteConfig
from .tracks import CompositeVideoTrack, MixAudioTrack

logger = logging.getLogger(__name__)

AUDIO_RING_FRAMES = 10  # 200 ms of 20 ms frames; older audio is dropped, never queued


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
        profile: Profile,
        ice_servers: list[RTCIceServer],
    ) -> None:
        self.room_id = room_id
        self.config = config
        self.profile = profile
        self.session_id = secrets.token_urlsafe(12)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        loop = asyncio.get_running_loop()
        self.video_out = CompositeVideoTrack(loop)
        self.audio_out = MixAudioTrack(loop)
        self.video_slot: VideoSlot | None = None
        self.audio_ring: collections.deque[av.AudioFrame] = collections.deque(
            maxlen=AUDIO_RING_FRAMES
        )
        self.frames_in = 0
        self.audio_frames_in = 0
        self.level_dbov = -127.0  # input level of the last mixed tick
        self.joined = time.monotonic()
        self.closed = asyncio.Event()
        self._drains: list[asyncio.Task[None]] = []

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

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
                self.closed.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))

        # the site receives exactly one video (the composite) and one audio (its mix)
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" in kinds:
            pc.addTrack(self.video_out)
        if "audio" in kinds:
            pc.addTrack(self.audio_out)

        # non-trickle ICE: setLocalDescription returns once gathering is complete
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def request_keyframe(self, reason: str) -> None:
        """Make the encoder of our outgoing video send a keyframe with its next frame."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.sender.track is self.video_out:
                # aiortc's own hook for a PLI from the site (1.16); the next frame is a keyframe
                transceiver.sender._send_keyframe()
                logger.info("room=%s site=%s keyframe requested (%s)", self.room_id, self.id,
                            reason)

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
        self.video_out.stop()
        self.audio_out.stop()
        await self.pc.close()
        for task in self._drains:
            task.cancel()
        for task in self._drains:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drains.clear()
        self.video_slot = None
        self.audio_ring.clear()
        self.closed.set()
