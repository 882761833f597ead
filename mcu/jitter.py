"""A jitter buffer that gives up on a lost packet in time.

aiortc's buffer (1.16) releases nothing behind a missing packet until the hole is filled or the
buffer overflows: on a lossy link audio then stays a full buffer behind and loses several good
frames with every lost one, and video stands still for seconds. This one waits for a hole only
as long as a retransmission could take (`patience`, in media time), then skips it: audio goes on
(the decoder conceals the gap), video drops the broken frame and asks for a keyframe.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from .opus import install_concealing_decoder

logger = logging.getLogger(__name__)

AUDIO_PATIENCE = 0.0  # s: no NACK for audio; a late packet is as good as lost, and waiting
# would leave the buffer behind for good (it gives out one frame per packet received)
VIDEO_PATIENCE = 0.35  # s: time for a NACK and its retransmission on a short link
NACK_TRIES = 2  # times one lost video packet is asked for
NACK_SPACING = 0.15  # s between two asks for the same packet
# on a longer link both follow the round trip (`tune`): a resent packet comes back one round
# trip after the NACK, plus a frame or two; never more than MAX_PATIENCE of standing still
PATIENCE_PER_RTT = 1.3
PATIENCE_MARGIN = 0.1  # s
MAX_PATIENCE = 1.0  # s
# before the first receiver report gives the round trip (a call's first seconds, when its first
# keyframes must get through): long enough for a resend over a district link
UNKNOWN_RTT_PATIENCE = 0.6  # s
RTP_WINDOW = 128  # a jump further than this many packets is a restart, not a loss burst


class PromptJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                 clock_rate: int = 90000, patience: float = VIDEO_PATIENCE) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self.clock_rate = clock_rate
        self.patience_ticks = int(patience * clock_rate)
        self.holes_skipped = 0
        self._newest: RtpPacket | None = None
        self._broken = False  # a skipped hole broke a frame: the decoder needs a keyframe

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self._newest = packet
        pli, frame = super().add(packet)
        if self._broken:
            self._broken = False
            pli = True
        return pli, frame

    def _stale(self, waiting: RtpPacket) -> bool:
        newest = self._newest
        if newest is None:
            return False
        return (newest.timestamp - waiting.timestamp) % (1 << 32) >= self.patience_ticks

    def _next_present(self, count: int) -> tuple[int, RtpPacket] | None:
        assert self._origin is not None and self._newest is not None
        # nothing can be present beyond the newest packet
        span = min(uint16_add(self._newest.sequence_number, -self._origin) + 1, self._capacity)
        for later in range(count + 1, span):
            packet = self._packets[(self._origin + later) % self._capacity]
            if packet is not None:
                return later, packet
        return None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        # aiortc's walk from the origin, except that a hole whose followers have waited
        # `patience` is passed over instead of ending the walk
        assert self._origin is not None
        frame = None
        frames = 0
        packets: list[Any] = []
        remove = 0
        timestamp = None
        broken = None  # the timestamp of a frame a skipped hole cut into
        count = 0
        while count < self._capacity:
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                following = self._next_present(count)
                if following is None or not self._stale(following[1]):
                    break
                self.holes_skipped += 1
                later, packet = following
                if packets and packet.timestamp == timestamp:
                    # the hole is inside this frame: it cannot be decoded whole
                    broken = timestamp
                    packets = []
                    timestamp = None
                    self._broken = self._is_video
                count = later
            if packet.timestamp == broken:
                count += 1  # the rest of the broken frame goes with it
                continue
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                if frame is None and packets:
                    frame = JitterFrame(data=b"".join(p._data for p in packets),
                                        timestamp=timestamp)
                    remove = count
                frames += 1
                if frames >= self._prefetch and frame is not None:
                    self.remove(remove)
                    return frame
                packets = []
                timestamp = packet.timestamp
            packets.append(packet)
            count += 1
        return None


class BoundedNacks:
    """Which lost video packets to ask for again, in place of aiortc's `NackGenerator`.

    aiortc's asks again for every packet still missing among the last 128 each time a new one
    goes missing, without end. On a congested link that is a flood: at 50 % loss each NACK
    names dozens of packets, the sender resends them all into the same full queue, and the
    resent packets are lost and named again. Here each lost packet is asked for at most
    `tries` times, `spacing` seconds apart, and not at all once the jitter buffer would have
    passed over it (`patience`).

    The receiver reads `missing` right after `add` returns True: it holds the packets due now.
    """

    def __init__(self, patience: float = VIDEO_PATIENCE, tries: int = NACK_TRIES,
                 spacing: float = NACK_SPACING) -> None:
        self.patience = patience
        self.tries = tries
        self.spacing = spacing
        self.max_seq: int | None = None
        self.missing: set[int] = set()  # due in the NACK about to be sent
        self._lost: dict[int, tuple[float, float, int]] = {}  # seq: (noticed, last asked, asks)
        self.asked = 0  # NACK entries sent, for tests and statistics

    def add(self, packet: RtpPacket, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        seq = packet.sequence_number
        if self.max_seq is None:
            self.max_seq = seq
            return False
        ahead = (seq - self.max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            for gap in range(1, min(ahead, RTP_WINDOW)):
                self._lost[(self.max_seq + gap) & 0xFFFF] = (now, -1e9, 0)
            self.max_seq = seq
        else:
            self._lost.pop(seq, None)  # late or resent: found

        due: set[int] = set()
        for lost, (noticed, asked_at, asks) in list(self._lost.items()):
            if asks >= self.tries or now - noticed > self.patience:
                del self._lost[lost]
            elif now - asked_at >= self.spacing:
                due.add(lost)
                self._lost[lost] = (noticed, now, asks + 1)
        self.missing = due
        self.asked += len(due)
        return bool(due)


def patience_for(rtt: float | None) -> float:
    """How long video waits for a lost packet on a link with this round trip (seconds)."""
    if rtt is None or rtt <= 0:
        return UNKNOWN_RTT_PATIENCE
    return min(MAX_PATIENCE, max(VIDEO_PATIENCE, PATIENCE_PER_RTT * rtt + PATIENCE_MARGIN))


def tune(receiver: Any, rtt: float | None) -> None:
    """Fit a video receiver's waiting for retransmissions to the link's round trip: long enough
    for one resend to come back, and no second ask before the first could have been answered.
    Receivers without our buffer (never installed) are left alone."""
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    nacks = getattr(receiver, "_RTCRtpReceiver__nack_generator", None)
    if not isinstance(buffer, PromptJitterBuffer) or not isinstance(nacks, BoundedNacks):
        return
    patience = patience_for(rtt)
    ticks = int(patience * buffer.clock_rate)
    if ticks != buffer.patience_ticks:
        logger.debug("video patience %.0f ms for a %s round trip", patience * 1000,
                     "unknown" if rtt is None else f"{rtt * 1000:.0f} ms")
    buffer.patience_ticks = ticks
    nacks.patience = patience
    nacks.spacing = max(NACK_SPACING, rtt or 0.0)


def install(receiver: Any, kind: str) -> None:
    """Give an aiortc receiver (before its first packet) a buffer that skips stale holes; its
    Opus decoding then fills the holes (FEC, concealment: `opus.ConcealingOpusDecoder`). Video
    asks for lost packets a bounded number of times (`BoundedNacks`)."""
    install_concealing_decoder()
    if kind == "audio":
        buffer = PromptJitterBuffer(16, prefetch=4, clock_rate=48000, patience=AUDIO_PATIENCE)
    else:
        buffer = PromptJitterBuffer(512, is_video=True, clock_rate=90000,
                                    patience=UNKNOWN_RTT_PATIENCE)
        receiver._RTCRtpReceiver__nack_generator = BoundedNacks(patience=UNKNOWN_RTT_PATIENCE)
    receiver._RTCRtpReceiver__jitter_buffer = buffer
