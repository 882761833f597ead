"""A receive-only viewer of a room: the operator console's live preview.

A viewer is not a site: it has no tile, sends nothing and is in nobody's mix. It receives the
room's shared canvas at the room's profile and the full mix, from the same encoders as the sites.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from .config import Profile
from .sdp import first_codec
from .tracks import EncodedAudioTrack, EncodedVideoTrack, answer_with

logger = logging.getLogger(__name__)


class Viewer:
    """One receive-only peer connection watching a room."""

    def __init__(self, room_id: str, profile: Profile, ice_servers: list[RTCIceServer]) -> None:
        self.room_id = room_id
        self.id = "viewer-" + secrets.token_urlsafe(8)
        self.profile = profile
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        loop = asyncio.get_running_loop()
        self.video_out = EncodedVideoTrack(loop)
        self.audio_out = EncodedAudioTrack(loop)
        self.codec: str | None = None
        self.on_picture_loss: Callable[[Viewer, str], None] | None = None
        self.closed = asyncio.Event()

    async def answer(self, offer_sdp: str) -> str:
        pc = self.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.closed.set()

        answer = await answer_with(pc, offer_sdp, self.video_out, self.audio_out)
        self.codec = first_codec(answer, "video")
        for transceiver in pc.getTransceivers():
            if transceiver.sender.track is self.video_out:
                hooked: Any = transceiver.sender
                hooked._send_keyframe = self._picture_lost
        return answer

    def _picture_lost(self) -> None:
        if self.on_picture_loss is not None:
            self.on_picture_loss(self, "PLI")

    async def close(self) -> None:
        self.video_out.stop()
        self.audio_out.stop()
        await self.pc.close()
        self.closed.set()
