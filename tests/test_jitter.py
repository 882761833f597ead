"""The jitter buffer against aiortc's: what comes out of a lossy packet stream."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from mcu.jitter import PromptJitterBuffer


def audio_packets(count: int, lost: set[int]) -> list[RtpPacket]:
    return [RtpPacket(payload_type=111, sequence_number=n, timestamp=960 * n,
                      payload=bytes([n % 256]) * 20)
            for n in range(count) if n not in lost]


def frames_out(buffer: JitterBuffer, packets: list[RtpPacket]) -> tuple[list[int], int]:
    released, plis = [], 0
    for packet in packets:
        packet._data = packet.payload  # type: ignore[attr-defined]  # what aiortc depayloads
        pli, frame = buffer.add(packet)
        plis += pli
        if frame is not None:
            released.append(frame.timestamp)
    return released, plis


def test_audio_skips_a_lost_packet_instead_of_stalling() -> None:
    lost = {20, 45, 70}
    packets = audio_packets(100, lost)
    ours, _ = frames_out(PromptJitterBuffer(16, prefetch=4, clock_rate=48000, patience=0.0),
                         packets)
    theirs, _ = frames_out(JitterBuffer(16, prefetch=4), packets)
    expected = [960 * n for n in range(100) if n not in lost]
    # everything received comes out, in order, minus the prefetch still held at the end
    assert ours == expected[: len(ours)] and len(ours) >= len(expected) - 5
    assert len(ours) > len(theirs), "aiortc's buffer loses good frames behind each hole"


def test_a_late_packet_still_in_the_buffer_is_used() -> None:
    packets = audio_packets(30, set())
    late = packets.pop(10)
    packets.insert(12, late)  # 40 ms late: the 80 ms the buffer holds back still has its place
    ours, _ = frames_out(PromptJitterBuffer(16, prefetch=4, clock_rate=48000, patience=0.0),
                         packets)
    assert ours == [960 * n for n in range(len(ours))], "nothing skipped, nothing reordered"


def video_packets(frames: int, per_frame: int, lost: set[int]) -> list[RtpPacket]:
    packets = []
    for f in range(frames):
        for p in range(per_frame):
            n = f * per_frame + p
            if n not in lost:
                packets.append(RtpPacket(payload_type=96, sequence_number=n,
                                         timestamp=6000 * f, payload=b"x" * 100))
    return packets


def test_video_drops_the_broken_frame_asks_for_a_keyframe_and_goes_on() -> None:
    lost = {3 * 10 + 1}  # the middle packet of frame 10, never retransmitted
    packets = video_packets(60, 3, lost)
    ours, plis = frames_out(PromptJitterBuffer(512, is_video=True, patience=0.35), packets)
    theirs, _ = frames_out(JitterBuffer(512, is_video=True), packets)
    assert 6000 * 10 not in ours, "the frame with a hole is not passed on broken"
    assert plis >= 1
    assert ours[-1] >= 6000 * 55, "frames after the hole keep coming"
    assert theirs[-1] < 6000 * 10, "aiortc's buffer stands still behind the hole"
