"""The link test's echo peer: a site's own camera and microphone, sent straight back to it.

Before a meeting a technician runs the link test page; it dials this peer instead of the room. The
peer is no site: it has no tile, is in nobody's mix and never touches a `Room`. It relays what it
receives back to the sender (aiortc decodes and re-encodes in its own threads) and hangs up by
itself after `duration` seconds, so a forgotten page cannot hold a connection open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from .tasks import stop_tasks

logger = logging.getLogger(__name__)

DURATION = 15.0  # seconds an echo lives: the page measures for 10 s once connected


@dataclass(frozen=True)
class EchoCounters:
    """Bytes that crossed an echo's transport, and over how long (for checks and logs)."""

    bytes_in: int
    bytes_out: int
    seconds: float

    @property
    def kbps_in(self) -> float:
        return self.bytes_in * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0

    @property
    def kbps_out(self) -> float:
        return self.bytes_out * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0


class Echo:
    """One link test: a peer connection that returns each received track to its sender."""

    def __init__(self, room_id: str, site_id: str, ice_servers: list[RTCIceServer],
                 duration: float = DURATION) -> None:
        self.room_id = room_id
        self.site_id = site_id
        self.id = "echo-" + secrets.token_urlsafe(9)
        self.duration = duration
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.closed = asyncio.Event()
        self.counters: EchoCounters | None = None  # filled in when the echo closes
        self.tracks_echoed: list[str] = []
        self._relay = MediaRelay()
        self._started = time.monotonic()
        self._timer: asyncio.Task[None] | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"Echo(room={self.room_id}, site={self.site_id}, id={self.id})"

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer, send every received track back and return the complete answer."""
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # newest-wins proxies: a slow sender drops frames instead of queueing them
            pc.addTrack(self._relay.subscribe(track, buffered=False))
            self.tracks_echoed.append(track.kind)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.debug("room=%s site=%s link test %s: connection %s", self.room_id,
                         self.site_id, self.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))

        # non-trickle ICE: the answer carries every candidate once this returns
        await pc.setLocalDescription(await pc.createAnswer())
        self._started = time.monotonic()
        self._timer = asyncio.ensure_future(self._expire())
        logger.info("room=%s site=%s link test %s started (%s echoed, %.0f s)", self.room_id,
                    self.site_id, self.id, "+".join(self.tracks_echoed) or "nothing",
                    self.duration)
        answer: str = pc.localDescription.sdp
        return answer

    async def _expire(self) -> None:
        await asyncio.sleep(self.duration)
        await self.close()

    async def close(self) -> None:
        """Hang up; safe to call more than once and from the expiry timer itself."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        try:
            self.counters = await _counters(self.pc, time.monotonic() - self._started)
        except Exception:  # statistics are a courtesy; closing must go on
            logger.debug("link test %s: no statistics at close", self.id, exc_info=True)
        await self.pc.close()
        timer = self._timer
        if timer is not None and timer is not asyncio.current_task():
            await stop_tasks([timer])
        counters = self.counters
        logger.info("room=%s site=%s link test %s ended%s", self.room_id, self.site_id, self.id,
                    f": {counters.kbps_in:.0f} kbit/s in, {counters.kbps_out:.0f} kbit/s out"
                    if counters else "")
        self.closed.set()


async def _counters(pc: RTCPeerConnection, seconds: float) -> EchoCounters:
    received = sent = 0
    for entry in (await pc.getStats()).values():
        if entry.type == "transport":
            received += entry.bytesReceived
            sent += entry.bytesSent
    return EchoCounters(received, sent, seconds)
