"""The jitter buffer against aiortc's: what comes out of a lossy packet stream."""

from __future__ import annotations

import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from mcu.jitter import BoundedNacks, PromptJitterBuffer


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


def video_packet(seq: int) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq % 65536, timestamp=3000 * seq)


def test_each_lost_packet_is_asked_for_twice_at_most_and_spaced() -> None:
    nacks = BoundedNacks(patience=0.35, tries=2, spacing=0.15)
    t = 100.0
    assert not nacks.add(video_packet(65533), now=t)
    assert not nacks.add(video_packet(65534), now=t)
    # 65535 and 0 are lost (across the wrap): asked for at once
    assert nacks.add(video_packet(1), now=t + 0.01)
    assert nacks.missing == {65535, 0}
    # too soon to ask again; a new loss is asked for on its own
    assert nacks.add(video_packet(3), now=t + 0.05)
    assert nacks.missing == {2}
    assert not nacks.add(video_packet(4), now=t + 0.10)
    # the retransmission of 0 arrives: only 65535 is asked for a second time
    assert not nacks.add(video_packet(0), now=t + 0.12)
    assert nacks.add(video_packet(5), now=t + 0.17)
    assert nacks.missing == {65535}
    # 2 gets its second ask; after that nobody is asked for a third time
    assert nacks.add(video_packet(6), now=t + 0.21)
    assert nacks.missing == {2}
    for step in range(7, 20):
        assert not nacks.add(video_packet(step), now=t + 0.21 + 0.05 * (step - 6))
    assert nacks.asked == 5


def test_a_packet_the_buffer_has_given_up_on_is_not_asked_for() -> None:
    nacks = BoundedNacks(patience=0.35, tries=5, spacing=0.15)
    t = 0.0
    nacks.add(video_packet(10), now=t)
    assert nacks.add(video_packet(12), now=t)
    asked = nacks.asked
    # packets keep coming, spaced over a second: 11 is asked for until its 0.35 s are over
    times = [t + 0.1 * k for k in range(1, 11)]
    due = [nacks.add(video_packet(12 + k), now=now) for k, now in enumerate(times, 1)]
    # asked again at 0.2 s (0.15 s after the first); due again from 0.35 s, but the next packet
    # comes at 0.4 s, past the patience: never again, though it had tries left
    assert nacks.asked - asked == 1
    assert due == [False, True] + [False] * 8


def test_the_wait_for_a_resent_packet_follows_the_round_trip() -> None:
    from aiortc import RTCRtpReceiver

    from mcu import jitter

    class Transport:  # what a receiver needs of its DTLS transport before it runs
        state = "new"

    receiver = RTCRtpReceiver("video", Transport())  # type: ignore[arg-type]
    jitter.install(receiver, "video")
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    nacks = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    assert nacks.patience == jitter.UNKNOWN_RTT_PATIENCE  # as installed
    # a short link keeps the floor; a district's 0.4 s round trip waits 1.3 x 0.4 + 0.1
    jitter.tune(receiver, 0.010)
    assert buffer.patience_ticks == int(jitter.VIDEO_PATIENCE * 90000)
    assert nacks.spacing == jitter.NACK_SPACING
    jitter.tune(receiver, 0.4)
    assert buffer.patience_ticks == int((1.3 * 0.4 + 0.1) * 90000)
    assert nacks.patience == pytest.approx(0.62) and nacks.spacing == 0.4
    # never more than a second of standing still; before any round trip is known (a call's
    # first seconds), long enough for a district link's resend
    jitter.tune(receiver, 3.0)
    assert nacks.patience == jitter.MAX_PATIENCE
    jitter.tune(receiver, None)
    assert nacks.patience == jitter.UNKNOWN_RTT_PATIENCE == 0.6
    assert buffer.patience_ticks == int(0.6 * 90000)
