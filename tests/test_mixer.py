"""Per-site audio input of the mixer: resampling, jitter priming, bounded buffering."""

from __future__ import annotations

import av
import numpy as np

from mcu.mixer import CONCEAL, FRAME, LIMIT, PRIME, SiteAudio


def stereo_frame(value: int, samples: int = FRAME, rate: int = 48000) -> av.AudioFrame:
    data = np.full((1, samples * 2), value, np.int16)
    frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


def test_audio_waits_for_priming_then_plays_in_order() -> None:
    audio = SiteAudio()
    out = np.empty(FRAME, np.int16)
    audio.feed(stereo_frame(1000))
    assert not audio.take(out) and not out.any(), "one frame is not enough to start"
    audio.feed(stereo_frame(2000))
    assert PRIME == 2
    assert audio.take(out) and (out == 1000).all()
    assert audio.take(out) and (out == 2000).all()
    assert audio.underruns == 0


def test_a_lost_frame_is_concealed_and_play_goes_on() -> None:
    audio = SiteAudio()
    out = np.empty(FRAME, np.int16)
    for value in (1000, 2000):
        audio.feed(stereo_frame(value))
    assert audio.take(out) and audio.take(out)
    # a packet lost: the last frame, fading, covers it; the next one plays at once
    assert not audio.take(out) and (out == 1000).all()
    audio.feed(stereo_frame(3000))
    assert audio.take(out) and (out == 3000).all(), "no refill wait after one lost frame"
    assert audio.underruns == 1
    # a long silence fades out and stops play until the FIFO is primed again
    faded = []
    for _ in range(CONCEAL + 2):
        audio.take(out)
        faded.append(int(out[0]))
    assert faded == [1500, 750, 375, 0, 0]
    audio.feed(stereo_frame(4000))
    assert not audio.take(out) and not out.any(), "one frame is not enough to restart"


def test_other_rates_are_resampled_to_48k() -> None:
    audio = SiteAudio()
    out = np.empty(FRAME, np.int16)
    for _ in range(10):
        audio.feed(stereo_frame(5000, samples=160, rate=8000))  # 20 ms of 8 kHz
    played = []
    for _ in range(10):
        if audio.take(out):
            played.append(int(out[FRAME // 2]))
    assert len(played) >= 7
    assert all(abs(value - 5000) < 100 for value in played[1:]), played


def test_buffer_is_bounded_and_drops_the_oldest() -> None:
    audio = SiteAudio()
    out = np.empty(FRAME, np.int16)
    for i in range(LIMIT + 5):
        audio.feed(stereo_frame(i))
    assert audio.dropped == 5 * FRAME
    assert audio.take(out) and (out == 5).all(), "the oldest five frames were dropped"
