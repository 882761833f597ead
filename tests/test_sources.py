"""The media sources a dialling site sends: timing, sizes, sample formats and content."""

from __future__ import annotations

import fractions
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from mcu import media
from mcu.sources import ColourTrack, FileTrack, OpusTrack, ToneTrack

CLIP_FPS = 30
CLIP_FRAMES = 30  # a 1-second clip: loops quickly


@pytest.fixture
def short_clip(tmp_path: Path) -> Path:
    """The first second of carphone_pristine.mp4, re-encoded at exactly 30 fps."""
    path = tmp_path / "carphone-1s.mp4"
    with av.open(str(media.clip("carphone_pristine.mp4"))) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for index, frame in enumerate(inp.decode(video=0)):
            if index == CLIP_FRAMES:
                break
            frame.pts = index
            frame.time_base = fractions.Fraction(1, CLIP_FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """One second of a 440 Hz tone, stereo at 44.1 kHz (so the track must resample)."""
    path = tmp_path / "tone.wav"
    t = np.arange(44100) / 44100
    wave_ = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(np.repeat(wave_, 2).tobytes())
    return path


def _source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("source-") and t.is_alive()]


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))


async def test_file_video_loops_with_increasing_pts_in_real_time(short_clip: Path) -> None:
    track = FileTrack(short_clip, "video")
    frames = []
    try:
        frames.append(await track.recv())
        started = time.monotonic()
        while time.monotonic() - started < 2.2:
            frames.append(await track.recv())
        elapsed = time.monotonic() - started
    finally:
        track.stop()

    # two loop boundaries crossed, one frame period between every pair of frames
    assert len(frames) > 2 * CLIP_FRAMES
    pts = np.array([f.pts for f in frames])
    step = 90000 / CLIP_FPS
    assert all(f.time_base == fractions.Fraction(1, 90000) for f in frames)
    assert np.all(np.abs(np.diff(pts) - step) <= 2), np.diff(pts)

    # paced by the wall clock, neither bursting nor lagging
    assert 0.8 * CLIP_FPS * elapsed <= len(frames) - 1 <= 1.2 * CLIP_FPS * elapsed
    assert abs((pts[-1] - pts[0]) / 90000 - elapsed) < 0.25
    assert _source_threads() == []


@pytest.mark.parametrize(
    ("name", "max_width", "size"),
    [
        ("bikes.mp4", 320, (320, 136)),
        ("bigbuckbunny.mp4", 640, (640, 360)),
        ("carphone_pristine.mp4", 640, (176, 144)),
    ],
)
async def test_file_video_max_width_keeps_aspect(
    name: str, max_width: int, size: tuple[int, int]
) -> None:
    track = FileTrack(media.clip(name), "video", max_width=max_width)
    try:
        frame = await track.recv()
    finally:
        track.stop()
    assert isinstance(frame, av.VideoFrame)
    assert (frame.width, frame.height) == size


async def test_file_audio_is_20ms_mono_48k_across_loops(tone_wav: Path) -> None:
    track = FileTrack(tone_wav, "audio")
    frames = []
    try:
        started = time.monotonic()
        for _ in range(70):  # 1.4 s: past the end of the 1-s file
            frames.append(await track.recv())
        elapsed = time.monotonic() - started
    finally:
        track.stop()

    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert frame.samples == 960
        assert frame.sample_rate == 48000
        assert frame.layout.name == "mono"
        assert frame.format.name == "s16"
    assert np.all(np.diff([f.pts for f in frames]) == 960)
    assert 0.8 * 69 * 0.02 <= elapsed <= 1.2 * 70 * 0.02 + 0.2

    # the tone survives resampling: 0.8 s of it peaks at 440 Hz (1.25 Hz bins)
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames[:40]])
    assert abs(_peak_hz(samples, 48000) - 440) <= 1.25
    assert _source_threads() == []


async def test_file_track_rejects_a_missing_stream(tone_wav: Path) -> None:
    with pytest.raises(ValueError, match="no video stream"):
        FileTrack(tone_wav, "video")


async def test_colour_track_frames_have_the_exact_colour() -> None:
    yuv = (81, 90, 240)  # BT.601 red
    track = ColourTrack(yuv, width=64, height=48, fps=15)
    frames = [await track.recv() for _ in range(4)]
    track.set_colour((41, 240, 110))  # BT.601 blue
    frames.append(await track.recv())
    track.stop()

    first = frames[0]
    assert (first.width, first.height, first.format.name) == (64, 48, "yuv420p")
    for index, (plane, value) in enumerate(zip(first.planes, yuv, strict=True)):
        width = 64 if index == 0 else 32
        rows = np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)
        assert np.all(rows[:, :width] == value)
    red = first.to_ndarray(format="rgb24").astype(int)
    assert np.all(np.abs(red - [255, 0, 0]) <= 3)
    blue = frames[-1].to_ndarray(format="rgb24").astype(int)
    assert np.all(np.abs(blue - [0, 0, 255]) <= 3)
    assert [f.pts for f in frames] == [n * 6000 for n in range(5)]


@pytest.mark.parametrize("frequency", [440.0, 1000.0, 2750.0])
async def test_tone_track_peaks_at_its_frequency(frequency: float) -> None:
    track = ToneTrack(frequency, amplitude=0.25)
    frames = [await track.recv() for _ in range(25)]  # 0.5 s: 2 Hz bins
    track.stop()

    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert abs(_peak_hz(samples, 48000) - frequency) <= 2
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert rms == pytest.approx(0.25 * 32767 / np.sqrt(2), rel=0.02)
    assert [f.pts for f in frames] == [n * 960 for n in range(25)]
    assert all(f.samples == 960 and f.sample_rate == 48000 for f in frames)


async def test_opus_track_sends_the_tone_as_mono_opus_at_its_rate_with_fec() -> None:
    import opuslib

    track = OpusTrack(ToneTrack(1000.0, amplitude=0.25), kbps=24)
    packets = [await track.recv() for _ in range(50)]  # 1 s
    track.stop()

    assert [p.pts for p in packets] == [n * 960 for n in range(50)]
    assert all(p.time_base == fractions.Fraction(1, 48000) for p in packets)
    # 24 kbit/s over a second of a steady tone: within the encoder's own variation
    kbps = sum(p.size for p in packets) * 8 / 1000
    assert 16 <= kbps <= 30, kbps
    # mono, decodable, and the tone comes out where it went in
    decoder = opuslib.Decoder(48000, 1)
    pcm = np.concatenate([np.frombuffer(decoder.decode(bytes(p), 960), np.int16)
                          for p in packets])
    assert abs(_peak_hz(pcm[9600:], 48000) - 1000.0) <= 2
    # the packets carry in-band FEC: a fresh decoder (no history to conceal from, so it could
    # only answer silence) rebuilds the previous frame from one of them
    fresh = opuslib.Decoder(48000, 1)
    fec = np.frombuffer(fresh.decode(bytes(packets[30]), 960, decode_fec=True), np.int16)
    assert np.sqrt(np.mean(fec.astype(np.float64) ** 2)) > 0.1 * 32767 / np.sqrt(2)


def test_opus_track_refuses_video_and_a_rate_opus_cannot_do() -> None:
    with pytest.raises(ValueError, match="not video"):
        OpusTrack(ColourTrack((0, 0, 0), 16, 16))
    with pytest.raises(ValueError, match="bitrate"):
        OpusTrack(ToneTrack(440.0), kbps=2)
