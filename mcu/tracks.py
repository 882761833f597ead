"""Outgoing tracks: what the room's workers produce for one site, handed to its aiortc sender.

The room's video and audio workers run in threads; they `offer()` frames from there. The track
hands each frame to the event loop and keeps only a bounded backlog (the newest frame for video,
a few 20 ms frames for audio), so a slow sender never makes memory grow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


class _OutgoingTrack(MediaStreamTrack):
    """A track fed from a worker thread through a bounded backlog."""

    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int) -> None:
        super().__init__()
        self._event_loop = loop  # pyee's emitter already uses `_loop`
        self._frames: collections.deque[av.VideoFrame | av.AudioFrame] = collections.deque(
            maxlen=backlog
        )
        self._ready = asyncio.Event()
        self.delivered = 0

    def offer(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        """Called from a worker thread; never blocks."""
        if self.readyState != "live":
            return
        # a closed event loop means the room is going away: the frame is simply dropped
        with contextlib.suppress(RuntimeError):
            self._event_loop.call_soon_threadsafe(self._put, frame)

    def _put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self._frames.append(frame)  # the oldest falls out when the backlog is full
        self._ready.set()

    async def _next(self) -> av.VideoFrame | av.AudioFrame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self.delivered += 1
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class EncodedVideoTrack(MediaStreamTrack):
    """The composite a site sees, as packets its encoder group already encoded.

    aiortc's sender sends them as they are (its pre-encoded path). Packets wait in a bounded
    backlog; if the sender falls that far behind, the backlog is dropped whole (a partial
    stream would not decode) and `on_overflow` asks the encoder for a keyframe.
    """

    kind = "video"

    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int = 60) -> None:
        super().__init__()
        self._event_loop = loop  # pyee's emitter already uses `_loop`
        self._packets: collections.deque[av.Packet[Any]] = collections.deque()
        self._backlog = backlog
        self._ready = asyncio.Event()
        self.on_overflow: Callable[[], None] | None = None
        self.delivered = 0
        self.overflows = 0

    def offer(self, packet: av.Packet[Any]) -> None:
        """Called from an encoder thread; never blocks."""
        if self.readyState != "live":
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: drop the packet
            self._event_loop.call_soon_threadsafe(self._put, packet)

    def _put(self, packet: av.Packet[Any]) -> None:
        if len(self._packets) >= self._backlog:
            self._packets.clear()
            self.overflows += 1
            if self.on_overflow is not None:
                self.on_overflow()
        self._packets.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet[Any]:
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self.delivered += 1
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class MixAudioTrack(_OutgoingTrack):
    """The N-1 mix a site hears: mono s16 at 48 kHz in 20 ms frames, continuous timestamps."""

    kind = "audio"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, backlog=5)
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        frame = await self._next()
        assert isinstance(frame, av.AudioFrame)

        # the encoder derives RTP timestamps from pts: keep them gapless per track
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        self._samples += frame.samples
        return frame
