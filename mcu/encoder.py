"""Shared video encoders: one per (canvas variant, profile, codec), feeding every site that sees it.

Sites that see the same canvas at the same profile and codec receive the very same packets, so the
MCU encodes once per group instead of once per site. Each group owns one codec context and one
thread: the video clock hands it the newest composite (never a queue), the thread encodes it and
gives the packets to every member's sender, which sends them through aiortc's pre-encoded path.

Keyframes: a site joining a group gets one at once; picture-loss requests from members force one,
at most one per group per `keyframe_interval` seconds (RFC 4585 section 6.3.1 PLI, RFC 5104 FIR).
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from .config import Profile

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
CODEC_THREADS = 1  # per encoder: many groups share two cores, so no codec-level threading
PERIODIC_KEYFRAME_SECONDS = 10  # a lost keyframe is repaired within this even without PLI
PAYLOAD_SHARE = 0.88


@dataclass(frozen=True)
class GroupKey:
    """What a group encodes: the canvas variant seen, the profile and the codec."""

    variant: str  # "all": the shared canvas; "speaker": the canvas the active speaker sees
    profile: str
    codec: str  # "vp8" or "h264"


Deliver = Callable[["av.Packet[Any]"], None]


def open_context(codec: str, profile: Profile) -> av.video.codeccontext.VideoCodecContext:
    """A real-time encoder context for `profile`: constant bitrate, no lookahead, no B-frames.

    The profile's rate is what the site's link must carry; the encoder aims at `PAYLOAD_SHARE`
    of it, leaving the rest for RTP, SRTP and UDP headers and the encoder's own overshoot.
    """
    bits = int(profile.video_kbps * 1000 * PAYLOAD_SHARE)
    if codec == "vp8":
        context = av.CodecContext.create("libvpx", "w")
        context.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
            "auto-alt-ref": "0",
            "static-thresh": "100",
            "undershoot-pct": "95",
            "overshoot-pct": "10",
            "minrate": str(bits),
            "maxrate": str(bits),
            "bufsize": str(bits // 2),
            "qmin": "4",
            "qmax": "58",
        }
    elif codec == "h264":
        context = av.CodecContext.create("libx264", "w")
        context.profile = "Constrained Baseline"
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "level": "3.1",
            "forced-idr": "1",
            # repeat SPS/PPS with every keyframe so a site can start at any of them
            "x264-params": "repeat-headers=1:scenecut=0:nal-hrd=cbr:force-cfr=1",
            "maxrate": str(bits),
            "bufsize": str(bits // 2),
        }
    else:
        raise ValueError(f"video codec not supported: {codec!r}")
    context.width = profile.width
    context.height = profile.height
    context.pix_fmt = "yuv420p"
    context.time_base = VIDEO_TIME_BASE
    context.framerate = fractions.Fraction(profile.fps, 1)
    context.bit_rate = bits
    context.gop_size = profile.fps * PERIODIC_KEYFRAME_SECONDS
    context.max_b_frames = 0
    context.thread_count = CODEC_THREADS
    return context


class VideoEncoderGroup:
    """One encoder and the sites it feeds."""

    def __init__(
        self,
        room_id: str,
        key: GroupKey,
        profile: Profile,
        keyframe_interval: float = 1.0,
    ) -> None:
        self.room_id = room_id
        self.key = key
        self.profile = profile
        self.keyframe_interval = keyframe_interval
        self.frames_in = 0
        self.frames_encoded = 0
        self.frames_dropped = 0  # a newer composite arrived before the encoder took this one
        self.bytes_out = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.keyframes_throttled = 0
        self.encode_seconds = 0.0
        self.errors = 0
        # the longest step between the timestamps of consecutive encoded frames: an output gap
        # (skipped clock ticks, frames dropped before encoding) shows here, in seconds
        self.longest_gap = 0.0
        self._last_pts: int | None = None
        self._members: dict[object, Deliver] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: av.VideoFrame | None = None
        self._keyframe_due = True  # the first frame of a stream is a keyframe anyway
        self._last_keyframe_at = -1e9
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"encode-{room_id}-{key.variant}-{key.profile}-{key.codec}",
            daemon=True,
        )
        self._thread.start()
        logger.info("room=%s encoder group %s/%s/%s started (%dx%d %d fps %d kbit/s)", room_id,
                    key.variant, key.profile, key.codec, profile.width, profile.height,
                    profile.fps, profile.video_kbps)

    def __repr__(self) -> str:
        return f"VideoEncoderGroup({self.room_id}, {self.key})"

    @property
    def members(self) -> int:
        with self._lock:
            return len(self._members)

    def add(self, member: object, deliver: Deliver, site: str) -> None:
        """A site joins: it starts with a keyframe, at once and unthrottled."""
        with self._lock:
            self._members[member] = deliver
            self._keyframe_due = True
        logger.info("room=%s site=%s joins encoder group %s/%s/%s (%d members)", self.room_id,
                    site, self.key.variant, self.key.profile, self.key.codec, self.members)

    def remove(self, member: object) -> None:
        with self._lock:
            self._members.pop(member, None)

    def request_keyframe(self, site: str, reason: str) -> bool:
        """A member lost pictures; True when this request schedules a keyframe."""
        now = time.monotonic()
        with self._lock:
            self.keyframe_requests += 1
            if self._keyframe_due:
                return False
            if now - self._last_keyframe_at < self.keyframe_interval:
                self.keyframes_throttled += 1
                return False
            self._keyframe_due = True
        logger.info("room=%s site=%s keyframe requested (%s) for group %s/%s/%s", self.room_id,
                    site, reason, self.key.variant, self.key.profile, self.key.codec)
        return True

    def force_keyframe(self, reason: str) -> None:
        """A keyframe for everyone, unthrottled (the picture changed entirely)."""
        with self._lock:
            self._keyframe_due = True
        logger.info("room=%s keyframe forced (%s) for group %s/%s/%s", self.room_id, reason,
                    self.key.variant, self.key.profile, self.key.codec)

    def submit(self, frame: av.VideoFrame) -> None:
        """Hand the newest composite to the encoder thread; never blocks on encoding."""
        with self._lock:
            if self._pending is not None:
                self.frames_dropped += 1
            self._pending = frame
            self.frames_in += 1
            self._wake.notify()

    def close(self) -> None:
        """Stop the thread (it finishes the frame it is encoding) and free the codec."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        context = open_context(self.key.codec, self.profile)
        while True:
            with self._lock:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                frame, self._pending = self._pending, None
                assert frame is not None
                keyframe, self._keyframe_due = self._keyframe_due, False
                deliveries = list(self._members.values())
            try:
                self._encode(context, frame, keyframe, deliveries)
            except Exception:
                # start over with a fresh encoder; the members get a keyframe from it
                self.errors += 1
                if self.errors == 1 or self.errors % 100 == 0:
                    logger.exception("room=%s encoder group %s failed (%d times); reopening",
                                     self.room_id, self.key, self.errors)
                context = open_context(self.key.codec, self.profile)
                with self._lock:
                    self._keyframe_due = True

    def _encode(
        self,
        context: av.video.codeccontext.VideoCodecContext,
        frame: av.VideoFrame,
        keyframe: bool,
        deliveries: list[Deliver],
    ) -> None:
        if (frame.width, frame.height) != (self.profile.width, self.profile.height):
            frame = frame.reformat(width=self.profile.width, height=self.profile.height)
        picture = av.video.frame.PictureType
        frame.pict_type = picture.I if keyframe else picture.NONE
        if frame.pts is not None:
            if self._last_pts is not None:
                self.longest_gap = max(self.longest_gap, (frame.pts - self._last_pts) / 90000)
            self._last_pts = frame.pts
        started = time.monotonic()
        packets = context.encode(frame)
        self.encode_seconds += time.monotonic() - started
        self.frames_encoded += 1
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
            self.bytes_out += packet.size
            if packet.is_keyframe:
                self.keyframes += 1
                self._last_keyframe_at = time.monotonic()
            for deliver in deliveries:
                deliver(packet)
