"""`mcu dial`: an aiortc endpoint that dials a room as one site.

It sends one video and one audio track, receives the site's composite and mix, can record them to
a file, and hangs up with DELETE on the session URL. The demo, the tests and performance engineers
use it as a site.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import jitter
from .exceptions import DialError
from .recorder import Recorder
from .tasks import stop_tasks

logger = logging.getLogger(__name__)


@dataclass
class CallStats:
    """What one call sent and received."""

    site: str
    seconds: float
    video_frames: int
    width: int
    height: int
    bytes_in: int
    bytes_out: int
    audio_dbov: float

    @property
    def fps(self) -> float:
        return self.video_frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def kbps_in(self) -> float:
        return self.bytes_in * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0

    @property
    def kbps_out(self) -> float:
        return self.bytes_out * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0


LOWEST_VIDEO_BPS = 64_000  # the MCU's uplink floor (mcu.uplink.FLOOR_BPS)


def follow_remb_down() -> None:
    """Let aiortc's video encoders in this process go as low as the MCU asks.

    aiortc clamps a REMB to at least 250 kbit/s (VP8) or 500 kbit/s (H.264) before it reaches
    the encoder: on a 384 kbit/s district link that floor alone fills the uplink. The clamps are
    module constants read at each REMB, so lowering them here is all it takes.
    """
    from aiortc.codecs import h264, vpx

    module: Any
    for module in (vpx, h264):
        if module.MIN_BITRATE > LOWEST_VIDEO_BPS:
            logger.debug("aiortc %s encoder floor lowered from %d to %d bit/s",
                         module.__name__, module.MIN_BITRATE, LOWEST_VIDEO_BPS)
            module.MIN_BITRATE = LOWEST_VIDEO_BPS


class Call:
    """One dialled session: connect, receive, hang up."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        record: str | Path | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        audio_history: float = 3.0,
    ) -> None:
        self.url = url
        self.site = url.rstrip("/").rsplit("/", 1)[-1]
        self._token = token
        self._video_out = video
        self._audio_out = audio
        self._record_path = Path(record) if record else None
        self._ice_servers = ice_servers or []
        self.location: str | None = None
        self.video_codecs: list[RTCRtpCodecCapability] = []  # preference order; empty: aiortc's
        self.answer_sdp: str | None = None
        self.latest_video: av.VideoFrame | None = None
        self.video_frames = 0
        self.frame_times: collections.deque[float] = collections.deque(maxlen=10_000)
        self.audio_frames = 0
        self._audio = collections.deque[np.ndarray](maxlen=int(audio_history / 0.02))
        self._audio_energy = 0.0
        self._audio_count = 0
        self._pc: RTCPeerConnection | None = None
        self._recorder: Recorder | None = None
        self._drains: list[asyncio.Task[None]] = []
        self._connected_at = 0.0
        self._ended_at: float | None = None
        self._frame_event = asyncio.Event()
        self._bytes = (0, 0)
        self.ended = asyncio.Event()  # set when the peer connection fails or is closed

    async def connect(self, timeout: float = 20.0) -> None:
        """Send the offer, apply the answer and start receiving."""
        if self._video_out is not None:
            follow_remb_down()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        self._pc = pc
        if self._record_path is not None:
            self._recorder = Recorder(self._record_path)

        # one sendrecv transceiver per kind; without a source the site only receives
        for kind, track in (("audio", self._audio_out), ("video", self._video_out)):
            if track is not None:
                transceiver = pc.addTransceiver(track, direction="sendrecv")
            else:
                transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "video" and self.video_codecs:
                transceiver.setCodecPreferences(self.video_codecs)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._drains.append(asyncio.ensure_future(self._drain(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.ended.set()

        # receivers that skip lost packets in time (aiortc's own stall behind them)
        for transceiver in pc.getTransceivers():
            jitter.install(transceiver.receiver, transceiver.kind)

        # non-trickle: the offer carries every candidate
        await pc.setLocalDescription(await pc.createOffer())
        headers = {
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {self._token}",
        }
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as http:
            async with http.post(self.url, data=pc.localDescription.sdp, headers=headers) as reply:
                body = await reply.text()
                if reply.status != 201:
                    await self._close_pc()
                    raise DialError(f"{self.url}: {reply.status} {body.strip()}")
                self.location = urljoin(self.url, reply.headers["Location"])
        self.answer_sdp = body
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        self._connected_at = time.monotonic()
        self._drains.append(asyncio.ensure_future(self._tune_receiving(pc)))
        logger.info("site=%s connected, session %s", self.site, self.location)

    async def _tune_receiving(self, pc: RTCPeerConnection) -> None:
        """Once a second, fit the wait for resent video to the round trip our senders measure
        from the MCU's receiver reports (`jitter.tune`)."""
        video = [t.receiver for t in pc.getTransceivers() if t.kind == "video"]
        while video:
            await asyncio.sleep(1.0)
            trips = [getattr(sender, "_RTCRtpSender__rtt", None) for sender in pc.getSenders()]
            rtt = next((float(t) for t in trips if t is not None), None)
            jitter.tune(video[0], rtt)

    @property
    def negotiated_video_codec(self) -> str | None:
        """MIME type of the video codec the MCU chose in its answer (first in its m=video)."""
        if self.answer_sdp is None:
            return None
        first: str | None = None
        for line in self.answer_sdp.splitlines():
            if line.startswith("m=video"):
                parts = line.split()
                first = parts[3] if len(parts) > 3 else None
            elif first and line.startswith(f"a=rtpmap:{first} "):
                return "video/" + line.split()[1].split("/")[0]
        return None

    async def hang_up(self, timeout: float = 5.0) -> None:
        """DELETE the session, close the peer connection and finish the recording."""
        if self._ended_at is None:
            self._ended_at = time.monotonic()
        if self.location is not None:
            headers = {"Authorization": f"Bearer {self._token}"}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=timeout)
                ) as http:
                    async with http.delete(self.location, headers=headers) as reply:
                        if reply.status not in (200, 204):
                            logger.warning("site=%s hang-up answered %d", self.site, reply.status)
            self.location = None
        await self._close_pc()

    async def _close_pc(self) -> None:
        if self._pc is not None:
            self._bytes = await _transport_bytes(self._pc)
            await self._pc.close()
            self._pc = None
        await stop_tasks(self._drains)
        self._drains.clear()
        for track in (self._video_out, self._audio_out):
            if track is not None:
                track.stop()
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            await asyncio.get_running_loop().run_in_executor(None, recorder.close)

    async def _drain(self, track: MediaStreamTrack) -> None:
        # keep pulling: aiortc queues received frames without bound until someone reads them
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                assert isinstance(frame, av.VideoFrame)
                if self.video_frames == 0:
                    logger.info("site=%s first picture %dx%d, %.1f s after connecting",
                                self.site, frame.width, frame.height,
                                time.monotonic() - self._connected_at)
                self.latest_video = frame
                self.video_frames += 1
                self.frame_times.append(time.monotonic())
                self._frame_event.set()
            else:
                assert isinstance(frame, av.AudioFrame)
                self.audio_frames += 1
                mono = _mono(frame)
                self._audio.append(mono)
                self._audio_energy += float(np.mean(mono.astype(np.float64) ** 2))
                self._audio_count += 1
            if self._recorder is not None:
                self._recorder.add(track.kind, frame)

    async def wait_video(self, frames: int = 1, timeout: float = 10.0) -> None:
        """Wait until `frames` more composite frames arrived."""
        target = self.video_frames + frames
        deadline = time.monotonic() + timeout
        while self.video_frames < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"site {self.site}: no composite video within {timeout} s")
            self._frame_event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._frame_event.wait(), remaining)

    def longest_gap(self, since: float) -> float:
        """The longest time between two received composite frames after `since` (monotonic)."""
        times = [t for t in self.frame_times if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def recent_audio(self, seconds: float) -> np.ndarray:
        """The last `seconds` of received audio, mono int16 at 48 kHz."""
        count = max(1, int(seconds / 0.02))
        chunks = list(self._audio)[-count:]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def stats(self) -> CallStats:
        """Counters of this call so far."""
        if self._pc is not None:
            self._bytes = await _transport_bytes(self._pc)
        bytes_in, bytes_out = self._bytes
        end = self._ended_at or time.monotonic()
        frame = self.latest_video
        mean_square = self._audio_energy / self._audio_count if self._audio_count else 0.0
        dbov = 20 * np.log10(np.sqrt(mean_square) / 32768) if mean_square > 0 else -127.0
        return CallStats(
            site=self.site,
            seconds=max(end - self._connected_at, 1e-9) if self._connected_at else 0.0,
            video_frames=self.video_frames,
            width=frame.width if frame else 0,
            height=frame.height if frame else 0,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            audio_dbov=float(max(dbov, -127.0)),
        )


async def _transport_bytes(pc: RTCPeerConnection) -> tuple[int, int]:
    """Bytes received and sent over the peer connection's transports."""
    received = sent = 0
    for entry in (await pc.getStats()).values():
        if entry.type == "transport":
            received += entry.bytesReceived
            sent += entry.bytesSent
    return received, sent


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """Mono int16 samples of a packed or planar s16 frame."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        total = samples.astype(np.int32).sum(axis=0)
    else:
        total = samples.reshape(-1, channels).astype(np.int32).sum(axis=1)
    mono: np.ndarray = (total // channels).astype(np.int16)
    return mono
