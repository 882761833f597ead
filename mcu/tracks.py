"""Outgoing tracks: the encoded packets one site receives, handed to its aiortc sender.

The room's encoders run in threads; they `offer()` packets from there. The track hands each
packet to the event loop and keeps only a bounded backlog, so a slow sender never makes memory
grow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)



async def answer_with(pc: RTCPeerConnection, offer_sdp: str, video: MediaStreamTrack,
                      audio: MediaStreamTrack) -> str:
    """Apply an offer, send `video` and `audio` on the offered sections, and return the answer
    with every candidate (non-trickle ICE: setLocalDescription returns once gathering is done).

    Each peer receives exactly one video and one audio from the MCU.
    """
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    kinds = {t.kind for t in pc.getTransceivers()}
    if "video" in kinds:
        pc.addTrack(video)
    if "audio" in kinds:
        pc.addTrack(audio)
    await pc.setLocalDescription(await pc.createAnswer())
    answer: str = pc.localDescription.sdp
    return answer


class PacketTrack(MediaStreamTrack):
    """Packets a shared encoder made, handed to one site's aiortc sender as they are (its
    pre-encoded path). Offered from encoder threads; the backlog is bounded."""

    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int) -> None:
        super().__init__()
        self._event_loop = loop  # pyee's emitter already uses `_loop`
        self._packets: collections.deque[av.Packet[Any]] = collections.deque()
        self._backlog = backlog
        self._ready = asyncio.Event()
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
            self.overflows += 1
            self._overflow()
        self._packets.append(packet)
        self._ready.set()

    def _overflow(self) -> None:
        self._packets.popleft()

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


class EncodedVideoTrack(PacketTrack):
    """The composite a site sees. If its sender falls a whole backlog behind, the backlog is
    dropped (a partial stream would not decode) and `on_overflow` asks for a keyframe."""

    kind = "video"

    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int = 60) -> None:
        super().__init__(loop, backlog)
        self.on_overflow: Callable[[], None] | None = None

    def _overflow(self) -> None:
        self._packets.clear()
        if self.on_overflow is not None:
            self.on_overflow()


class EncodedAudioTrack(PacketTrack):
    """The mix a site hears, one Opus packet per 20 ms; the oldest is dropped past 200 ms."""

    kind = "audio"

    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int = 10) -> None:
        super().__init__(loop, backlog)
