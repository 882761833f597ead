"""Write received audio and video to a file from a thread of its own.

The event loop only queues frame references; the recorder thread owns the container and both
encoders, so encoding never stalls the loop. The queue is bounded: when the disk or CPU cannot keep
up, frames are dropped and counted instead of piling up.
"""

from __future__ import annotations

import fractions
import logging
import queue
import threading
from pathlib import Path

import av

logger = logging.getLogger(__name__)

_VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


class Recorder:
    """Record a video and/or an audio stream into one container (mp4 → H.264 + AAC)."""

    def __init__(self, path: str | Path, queue_size: int = 120) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped = 0
        self.video_frames = 0
        self._queue: queue.Queue[tuple[str, av.VideoFrame | av.AudioFrame] | None] = (
            queue.Queue(queue_size)
        )
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.path.name}")
        self._thread.start()

    def add(self, kind: str, frame: av.VideoFrame | av.AudioFrame) -> None:
        """Queue a frame; never blocks."""
        try:
            self._queue.put_nowait((kind, frame))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Flush the encoders, close the file and stop the thread (blocks until done)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        container = av.open(str(self.path), mode="w")
        video: av.video.stream.VideoStream | None = None
        audio: av.audio.stream.AudioStream | None = None
        video_start: int | None = None
        last_pts = -1
        audio_samples = 0
        try:
            while (item := self._queue.get()) is not None:
                kind, frame = item
                if kind == "video":
                    assert isinstance(frame, av.VideoFrame)
                    if video is None:
                        video = container.add_stream("libx264", rate=30)
                        video.width, video.height = frame.width, frame.height
                        video.pix_fmt = "yuv420p"
                        video.codec_context.time_base = _VIDEO_TIME_BASE
                        video.options = {"preset": "veryfast", "tune": "zerolatency"}
                    if (frame.width, frame.height) != (video.width, video.height):
                        frame = frame.reformat(width=video.width, height=video.height)
                    pts = _ticks(frame)
                    if video_start is None:
                        video_start = pts
                    # a repeated timestamp would make the muxer refuse the packet
                    last_pts = max(pts - video_start, last_pts + 1)
                    frame.pts = last_pts
                    frame.time_base = _VIDEO_TIME_BASE
                    container.mux(video.encode(frame))
                    self.video_frames += 1
                else:
                    assert isinstance(frame, av.AudioFrame)
                    if audio is None:
                        audio = container.add_stream("aac", rate=frame.sample_rate)
                        audio.layout = frame.layout.name
                    frame.pts = audio_samples
                    frame.time_base = fractions.Fraction(1, frame.sample_rate)
                    audio_samples += frame.samples
                    container.mux(audio.encode(frame))
            for stream in (video, audio):
                if stream is not None:
                    container.mux(stream.encode(None))
        except Exception:
            logger.exception("recording to %s failed", self.path)
        finally:
            container.close()
            logger.info("recorded %d video frames to %s (%d dropped)",
                        self.video_frames, self.path, self.dropped)


def _ticks(frame: av.VideoFrame) -> int:
    """The frame's presentation time in 90 kHz ticks."""
    if frame.pts is None or frame.time_base is None:
        return 0
    return int(frame.pts * frame.time_base * 90000)
