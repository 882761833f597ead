"""Write received audio and video to a file from a thread of its own.

The event loop only queues frame references; the recorder thread owns the container and both
encoders, so encoding never stalls the loop. The queue is bounded: when the disk or CPU cannot keep
up, frames are dropped and counted instead of piling up.

A container's streams must all exist before its header is written, so frames are held back until
every expected kind has delivered one (or until `wait_for_kinds` seconds have passed: a site on a
lossy link may wait several seconds for its first picture).
"""

from __future__ import annotations

import fractions
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import av

logger = logging.getLogger(__name__)

_VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
MAX_GAP_SECONDS = 5  # a longer silence is not filled in sample by sample
Frame = av.VideoFrame | av.AudioFrame


class Recorder:
    """Record a video and/or an audio stream into one container (mp4 → H.264 + AAC)."""

    def __init__(
        self,
        path: str | Path,
        kinds: tuple[str, ...] = ("video", "audio"),
        queue_size: int = 120,
        wait_for_kinds: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kinds = kinds
        self.wait_for_kinds = wait_for_kinds
        self.dropped = 0
        self.video_frames = 0
        self.audio_frames = 0
        self.failed = False
        self._queue: queue.Queue[tuple[str, Frame] | None] = queue.Queue(queue_size)
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, Any] = {}  # kind → av VideoStream or AudioStream
        self._video_start: int | None = None
        self._last_pts = -1
        self._audio_samples = 0
        self._audio_origin: int | None = None
        self.audio_gaps = 0
        self._late: set[str] = set()  # kinds that came after the header was written
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.path.name}")
        self._thread.start()

    def add(self, kind: str, frame: Frame) -> None:
        """Queue a frame; never blocks."""
        try:
            self._queue.put_nowait((kind, frame))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Flush the encoders, close the file and stop the thread (blocks until done)."""
        self._queue.put(None)  # the thread keeps reading until it sees this, even after a failure
        self._thread.join()

    def _run(self) -> None:
        held: list[tuple[str, Frame]] = []
        started = time.monotonic()
        while (item := self._queue.get()) is not None:
            if self.failed:
                continue
            try:
                if self._container is None:
                    held.append(item)
                    seen = {kind for kind, _ in held}
                    waited = time.monotonic() - started > self.wait_for_kinds
                    if seen >= set(self.kinds) or waited:
                        self._open(held)
                        for kind, frame in held:
                            self._write(kind, frame)
                        held = []
                else:
                    self._write(*item)
            except Exception:
                self.failed = True
                logger.exception("recording to %s failed; the rest is discarded", self.path)
        if held and not self.failed:
            # the call ended before every kind showed up: record what there is
            self._open(held)
            for kind, frame in held:
                self._write(kind, frame)
        self._finish()

    def _open(self, held: list[tuple[str, Frame]]) -> None:
        container = av.open(str(self.path), mode="w")
        self._container = container
        for kind, frame in held:
            if kind in self._streams:
                continue
            if isinstance(frame, av.VideoFrame):
                video = container.add_stream("libx264", rate=30)
                video.width, video.height = frame.width, frame.height
                video.pix_fmt = "yuv420p"
                video.codec_context.time_base = _VIDEO_TIME_BASE
                video.options = {"preset": "veryfast", "tune": "zerolatency"}
                self._streams[kind] = video
            else:
                audio = container.add_stream("aac", rate=frame.sample_rate)
                audio.layout = frame.layout.name
                self._streams[kind] = audio

    def _write(self, kind: str, frame: Frame) -> None:
        assert self._container is not None
        stream = self._streams.get(kind)
        if stream is None:
            # a kind that showed up too late for the header
            if kind not in self._late:
                self._late.add(kind)
                logger.warning("%s: first %s came more than %.0f s after the recording began; "
                               "it is not recorded", self.path, kind, self.wait_for_kinds)
            return
        if isinstance(frame, av.VideoFrame):
            if (frame.width, frame.height) != (stream.width, stream.height):
                frame = frame.reformat(width=stream.width, height=stream.height)
            pts = _ticks(frame)
            if self._video_start is None:
                self._video_start = pts
            # a repeated timestamp would make the muxer refuse the packet
            self._last_pts = max(pts - self._video_start, self._last_pts + 1)
            frame.pts = self._last_pts
            frame.time_base = _VIDEO_TIME_BASE
            self.video_frames += 1
        else:
            # keep audio in step with the clock it was sent on: fill what the network lost
            # with silence, drop what arrives late
            rate = frame.sample_rate
            at = _samples(frame)
            if at is not None:
                if self._audio_origin is None:
                    self._audio_origin = at
                gap = at - self._audio_origin - self._audio_samples
                if gap < -frame.samples // 2:
                    return
                if gap > frame.samples // 2:
                    self._write_silence(stream, frame, min(gap, MAX_GAP_SECONDS * rate))
            frame.pts = self._audio_samples
            frame.time_base = fractions.Fraction(1, rate)
            self._audio_samples += frame.samples
            self.audio_frames += 1
        self._container.mux(stream.encode(frame))

    def _write_silence(self, stream: Any, like: av.AudioFrame, samples: int) -> None:
        assert self._container is not None
        silence = av.AudioFrame(format=like.format.name, layout=like.layout.name,
                                samples=samples)
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = like.sample_rate
        silence.pts = self._audio_samples
        silence.time_base = fractions.Fraction(1, like.sample_rate)
        self._audio_samples += samples
        self.audio_gaps += 1
        self._container.mux(stream.encode(silence))

    def _finish(self) -> None:
        if self._container is None:
            return
        try:
            if not self.failed:
                for stream in self._streams.values():
                    self._container.mux(stream.encode(None))
        except Exception:
            logger.exception("flushing %s failed", self.path)
        finally:
            self._container.close()
        logger.info("recorded %d video and %d audio frames to %s (%d dropped, %d audio gaps "
                    "filled)", self.video_frames, self.audio_frames, self.path, self.dropped,
                    self.audio_gaps)


def _samples(frame: av.AudioFrame) -> int | None:
    """The frame's presentation time in samples, when it has one."""
    if frame.pts is None or frame.time_base is None:
        return None
    return int(frame.pts * frame.time_base * frame.sample_rate)


def _ticks(frame: av.VideoFrame) -> int:
    """The frame's presentation time in 90 kHz ticks."""
    if frame.pts is None or frame.time_base is None:
        return 0
    return int(frame.pts * frame.time_base * 90000)
