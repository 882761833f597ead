"""Media sources a dialling site sends: a looping media file, a flat colour, a sine tone.

Each is an aiortc `MediaStreamTrack` paced in real time. A file is decoded by a thread of its own
that loops it with continuous timestamps and hands frames over through a short queue, so the event
loop only moves frame references.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


class _Paced:
    """Real-time pacing against a monotonic clock, shared by the synthetic tracks."""

    def __init__(self) -> None:
        self._start: float | None = None

    async def wait_until(self, media_seconds: float) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        delay = self._start + media_seconds - now
        if delay > 0:
            await asyncio.sleep(delay)


class ColourTrack(MediaStreamTrack):
    """A flat I420 colour at a given size and frame rate; size and rate may change mid-stream
    (any size, odd ones included, as a misbehaving camera might send)."""

    kind = "video"

    def __init__(
        self, yuv: tuple[int, int, int], width: int = 320, height: int = 240, fps: int = 15
    ) -> None:
        super().__init__()
        self.yuv = yuv
        self.width = width
        self.height = height
        self.fps = fps
        self._media_time = 0.0
        self._pacing = _Paced()

    def set_colour(self, yuv: tuple[int, int, int]) -> None:
        self.yuv = yuv

    def set_size(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def set_fps(self, fps: int) -> None:
        self.fps = fps

    def _make_frame(self) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, value in zip(frame.planes, self.yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        return frame

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacing.wait_until(self._media_time)
        frame = self._make_frame()
        frame.pts = round(self._media_time * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        self._media_time += 1 / self.fps
        return frame


class ToneTrack(MediaStreamTrack):
    """A continuous sine tone, mono s16 at 48 kHz in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.25) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = 0
        self._pacing = _Paced()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacing.wait_until(self._samples / AUDIO_RATE)
        t = (self._samples + np.arange(AUDIO_SAMPLES)) / AUDIO_RATE
        wave = self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        self._samples += AUDIO_SAMPLES
        return frame


class FileTrack(MediaStreamTrack):
    """One stream (audio or video) of a media file, looped, in real time.

    Video larger than `max_width` is scaled down (keeping aspect) in the source thread; audio is
    resampled to mono s16 at 48 kHz in 20 ms frames. Timestamps keep increasing across loops.
    """

    def __init__(
        self, path: str | Path, kind: str, loop: bool = True, max_width: int | None = None
    ) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
        self.kind = kind
        self.path = Path(path)
        self.loop = loop
        self.max_width = max_width
        self._queue: asyncio.Queue[av.AudioFrame | av.VideoFrame | None] = asyncio.Queue(8)
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

        # fail now, in the caller, if the file or stream is missing
        with av.open(str(self.path)) as container:
            streams = container.streams.audio if kind == "audio" else container.streams.video
            if not streams:
                raise ValueError(f"{self.path} has no {kind} stream")

    async def recv(self) -> av.AudioFrame | av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._thread is None:
            self._event_loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._run, name=f"source-{self.kind}-{self.path.name}", daemon=True
            )
            self._thread.start()
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        self._quit.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _hand_over(self, frame: av.AudioFrame | av.VideoFrame | None) -> None:
        # runs on the event loop: newest wins when the consumer falls behind
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    def _run(self) -> None:
        assert self._event_loop is not None
        start = time.monotonic()
        offset = 0.0  # media seconds already played in earlier loops
        try:
            while not self._quit.is_set():
                played = self._play_once(start, offset)
                if played <= 0 or not self.loop:
                    break
                offset += played
        except Exception:
            logger.exception("source %s stopped on a decoding error", self.path)
        if not self._quit.is_set():
            self._event_loop.call_soon_threadsafe(self._hand_over, None)

    def _play_once(self, start: float, offset: float) -> float:
        """Play the file once from `offset`; return the media seconds it lasted."""
        end = 0.0
        with av.open(str(self.path)) as container:
            if self.kind == "video":
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                span = 1 / float(stream.average_rate or 25)
                frames = self._video_frames(container.decode(stream), offset)
            else:
                span = AUDIO_SAMPLES / AUDIO_RATE
                frames = self._audio_frames(container.decode(container.streams.audio[0]), offset)
            for frame, at in frames:
                if self._quit.is_set():
                    break
                delay = start + at - time.monotonic()
                if delay > 0:
                    self._quit.wait(delay)
                assert self._event_loop is not None
                self._event_loop.call_soon_threadsafe(self._hand_over, frame)
                end = at - offset + span
        return end

    def _video_frames(self, decoded, offset: float):  # type: ignore[no-untyped-def]
        first: float | None = None
        previous = 0.0
        for frame in decoded:
            t = float(frame.time) if frame.time is not None else previous
            if first is None:
                first = t
            at = offset + t - first
            previous = t
            if self.max_width and frame.width > self.max_width:
                height = round(frame.height * self.max_width / frame.width / 2) * 2
                frame = frame.reformat(width=self.max_width, height=height, format="yuv420p")
            frame.pts = round(at * VIDEO_CLOCK)
            frame.time_base = VIDEO_TIME_BASE
            yield frame, at

    def _audio_frames(self, decoded, offset: float):  # type: ignore[no-untyped-def]
        resampler = av.AudioResampler(
            format="s16", layout="mono", rate=AUDIO_RATE, frame_size=AUDIO_SAMPLES
        )
        samples = round(offset * AUDIO_RATE)
        for decoded_frame in decoded:
            for frame in resampler.resample(decoded_frame):
                frame.pts = samples
                frame.time_base = AUDIO_TIME_BASE
                samples += frame.samples
                yield frame, samples / AUDIO_RATE - AUDIO_SAMPLES / AUDIO_RATE


class OpusTrack(MediaStreamTrack):
    """Another audio track's frames, encoded here as mono Opus with in-band FEC.

    aiortc's own encoder sends stereo at 96 kbit/s without FEC: a quarter of a district's
    384 kbit/s, and nothing for the MCU's decoder to rebuild a lost packet from. This one sends
    `kbps` (32 by default), with FEC tuned for `loss_percent` loss, on aiortc's pre-encoded path.
    """

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, kbps: int = 32, loss_percent: int = 10) -> None:
        from .opus import OpusEncoder, OpusSettings

        super().__init__()
        if source.kind != "audio":
            raise ValueError(f"OpusTrack encodes audio, not {source.kind}")
        self._source = source
        # checks the rate (6..256 kbit/s mono) now, in the caller
        self._encoder = OpusEncoder(OpusSettings(bitrate=kbps * 1000, channels=1, fec=True,
                                                 loss_percent=loss_percent))
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE,
                                            frame_size=AUDIO_SAMPLES)
        self._ready: list[np.ndarray] = []
        self._samples = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        while not self._ready:
            frame = await self._source.recv()
            if not isinstance(frame, av.AudioFrame):
                raise MediaStreamError(f"OpusTrack's source gave {type(frame).__name__}")
            self._ready += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        packet = self._encoder.packet(self._ready.pop(0), self._samples)
        self._samples += AUDIO_SAMPLES
        return packet

    def stop(self) -> None:
        self._source.stop()
        super().stop()
