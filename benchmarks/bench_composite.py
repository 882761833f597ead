"""How long one composite canvas takes: the kernel beside OpenCV, swscale, libyuv, numpy, ffmpeg.

Every method builds the same full I420 canvas from the same decoded pictures, one distinct
picture per tile, letterboxed into the tile the way `mcu._mix.scale_into_tile` does it. The
methods are timed round-robin within each case and reported as the median ms per canvas.

    .venv/bin/python benchmarks/bench_composite.py [--quick] [--json FILE] [--simd LEVEL]

All methods run on one thread (OpenCV and ffmpeg are told so); the numpy reference may use as
many threads as its BLAS library picks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import av
import numpy as np
from numpy.typing import NDArray

import common
from mcu import _mix, _mix_ref, media
from mcu.compositor import BACKGROUND, planes
from mcu.layout import Layout, load_layouts

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ROOT / "layouts"

Rect = tuple[int, int, int, int]
Planes = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]

# (layout, canvas); 2x2 on 1280x720 is there for its exact 2x case with 1280x720 sources
CASES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("2x2", (640, 360)),
    ("2x2", (1280, 720)),
    ("3x3", (1280, 720)),
    ("4x4", (1280, 720)),
    ("1+5", (1280, 720)),
)
SOURCES: tuple[tuple[int, int], ...] = ((1280, 720), (640, 360), (176, 144))

# tile i shows a frame of clip i % 3; frames further into the clips for later tiles
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
FIRST_FRAME = 6
FRAME_STEP = 7

METHODS = ("kernel", "opencv", "swscale", "libyuv", "numpy", "ffmpeg", "floor", "read")

# libyuv's FilterMode value for area averaging (kFilterBox), what the other methods do too
LIBYUV_BOX = 3

# targets the fast kernel is to meet (kernel time / other method's time)
TARGET_LAYOUT = ("3x3", (1280, 720))
TARGET_VS_OPENCV = 0.09
TARGET_VS_SWSCALE = 0.55
TARGET_VS_FLOOR = 1.3

# ffmpeg: seconds of extra frames its long run should take (the short run's startup cancels)
FFMPEG_SHORT_FRAMES = 3
FFMPEG_FIRST_EXTRA = 20
FFMPEG_MAX_EXTRA = 5000
FFMPEG_EXTRA_SECONDS = 0.6


@dataclass(frozen=True)
class Rounds:
    fast: int  # kernel, opencv, swscale, libyuv, floor, read
    numpy: int
    ffmpeg: int
    ffmpeg_extra: int | None  # frames of ffmpeg's long run past its short one; None: calibrate


DEFAULT_ROUNDS = Rounds(fast=30, numpy=5, ffmpeg=3, ffmpeg_extra=None)
QUICK_ROUNDS = Rounds(fast=3, numpy=1, ffmpeg=1, ffmpeg_extra=40)


@dataclass(frozen=True)
class Placed:
    """One tile of a case: its source picture, the tile and the letterboxed image inside it."""

    frame: av.VideoFrame
    planes: Planes
    tile: Rect
    image: Rect

    def rects(self) -> tuple[tuple[Rect, Rect], ...]:
        """(tile, image) rectangles per plane: Y, then U and V."""
        chroma = (_mix_ref.chroma_rect(*self.tile), _mix_ref.chroma_rect(*self.image))
        return ((self.tile, self.image), chroma, chroma)


@dataclass(frozen=True)
class Case:
    layout: str
    canvas: tuple[int, int]
    source: tuple[int, int]
    placed: tuple[Placed, ...]

    @property
    def names(self) -> dict[str, str]:
        return {
            "layout": self.layout,
            "canvas": size_name(self.canvas),
            "source": size_name(self.source),
        }

    @property
    def exact_half(self) -> bool:
        """Every tile shows its source scaled to exactly half in both directions."""
        sw, sh = self.source
        return all(p.image[2] * 2 == sw and p.image[3] * 2 == sh for p in self.placed)

    @property
    def shrinks(self) -> bool:
        """Every tile shows its source smaller than it is."""
        sw, sh = self.source
        return all(p.image[2] < sw and p.image[3] < sh for p in self.placed)


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ---------------------------------------------------------------------------------------------
# source pictures


def decode_pictures(count: int) -> list[av.VideoFrame]:
    """`count` distinct decoded frames, taken in turn from the sample clips."""
    wanted: dict[str, list[int]] = {name: [] for name in CLIPS}
    for i in range(count):
        wanted[CLIPS[i % len(CLIPS)]].append(FIRST_FRAME + FRAME_STEP * (i // len(CLIPS)))

    found: dict[tuple[str, int], av.VideoFrame] = {}
    for name, indices in wanted.items():
        if not indices:
            continue
        with av.open(str(media.clip(name))) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in indices:
                    found[name, index] = frame.reformat(format="yuv420p")
                if index >= max(indices):
                    break
        missing = [i for i in indices if (name, i) not in found]
        if missing:
            raise RuntimeError(f"clip {name} has no frames {missing}")

    return [
        found[CLIPS[i % len(CLIPS)], FIRST_FRAME + FRAME_STEP * (i // len(CLIPS))]
        for i in range(count)
    ]


def build_case(
    layout: Layout,
    canvas: tuple[int, int],
    source: tuple[int, int],
    pictures: Sequence[av.VideoFrame],
) -> Case:
    """The tiles of `layout` on the canvas, each showing the next picture at the source size."""
    placed = []
    for tile, picture in zip(layout.tiles, pictures):
        frame = picture.reformat(width=source[0], height=source[1], format="yuv420p")
        rect = tile.rect(*canvas)
        image = _mix.fit_rect(source[0], source[1], *rect)
        placed.append(Placed(frame, planes(frame), rect, image))
    if len(placed) < len(layout.tiles):
        raise ValueError(f"{len(pictures)} pictures for {len(layout.tiles)} tiles")
    return Case(layout.name, canvas, source, tuple(placed))


# ---------------------------------------------------------------------------------------------
# in-process methods: each draws the whole canvas once per call


def fill_bars(plane: NDArray[np.uint8], tile: Rect, image: Rect, value: int) -> None:
    """Fill the part of `tile` outside `image` (the letterbox bars)."""
    tx, ty, tw, th = tile
    ix, iy, iw, ih = image
    plane[ty:iy, tx : tx + tw] = value
    plane[iy + ih : ty + th, tx : tx + tw] = value
    plane[iy : iy + ih, tx:ix] = value
    plane[iy : iy + ih, ix + iw : tx + tw] = value


def new_canvas(width: int, height: int) -> Planes:
    """Y, U and V planes laid out in one buffer one after the other, as the compositor does."""
    buffer = np.zeros(width * height * 3 // 2, np.uint8)
    luma = width * height
    chroma = luma // 4
    return (
        buffer[:luma].reshape(height, width),
        buffer[luma : luma + chroma].reshape(height // 2, width // 2),
        buffer[luma + chroma :].reshape(height // 2, width // 2),
    )


def draw_kernel(case: Case, canvas: Planes) -> Callable[[], None]:
    def draw() -> None:
        for p in case.placed:
            _mix.scale_into_tile(*p.planes, *canvas, *p.tile, *BACKGROUND)

    return draw


def draw_numpy(case: Case, canvas: Planes) -> Callable[[], None]:
    def draw() -> None:
        for p in case.placed:
            _mix_ref.scale_into_tile(p.planes, canvas, p.tile, p.image, BACKGROUND)

    return draw


def draw_opencv(case: Case, canvas: Planes, cv2: ModuleType) -> Callable[[], None]:
    def draw() -> None:
        for p in case.placed:
            for src, dst, (tile, image), bg in zip(p.planes, canvas, p.rects(), BACKGROUND):
                x, y, w, h = image
                fill_bars(dst, tile, image, bg)
                dst[y : y + h, x : x + w] = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)

    return draw


def draw_swscale(case: Case, canvas: Planes) -> Callable[[], None]:
    def draw() -> None:
        for p in case.placed:
            scaled = p.frame.reformat(
                width=p.image[2], height=p.image[3], format="yuv420p", interpolation="AREA"
            )
            for src, dst, (tile, image), bg in zip(planes(scaled), canvas, p.rects(), BACKGROUND):
                x, y, w, h = image
                fill_bars(dst, tile, image, bg)
                dst[y : y + h, x : x + w] = src

    return draw


def draw_floor(case: Case, canvas: Planes) -> Callable[[], None]:
    """Copy only: the pictures scaled beforehand, then bars and pictures written to the canvas."""
    ready: list[Planes] = []
    for p in case.placed:
        scaled = []
        for src, (_, image) in zip(p.planes, p.rects()):
            out = np.empty((image[3], image[2]), np.uint8)
            _mix.scale_plane(src, out, 0, 0, image[2], image[3])
            scaled.append(out)
        ready.append((scaled[0], scaled[1], scaled[2]))

    def draw() -> None:
        for p, pictures in zip(case.placed, ready):
            for src, dst, (tile, image), bg in zip(pictures, canvas, p.rects(), BACKGROUND):
                x, y, w, h = image
                fill_bars(dst, tile, image, bg)
                dst[y : y + h, x : x + w] = src

    return draw


def load_libyuv() -> ctypes.CDLL | None:
    """libyuv through ctypes with I420Scale's argument types, or None when it is not installed."""
    for name in (ctypes.util.find_library("yuv"), "libyuv.so.0"):
        if name is None:
            continue
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        plane, number = ctypes.c_void_p, ctypes.c_int
        # (plane, stride) for Y, U, V and width, height: the source, then the destination
        picture = (plane, number, plane, number, plane, number, number, number)
        library.I420Scale.argtypes = (*picture, *picture, number)
        library.I420Scale.restype = number
        return library
    return None


def draw_libyuv(case: Case, canvas: Planes, libyuv: ctypes.CDLL) -> Callable[[], None]:
    """I420Scale with the box filter, writing straight into the image rectangle of the canvas."""
    calls: list[list[int]] = []
    for p in case.placed:
        args: list[int] = []
        for src in p.planes:
            args += [src.ctypes.data, src.strides[0]]
        args += [p.planes[0].shape[1], p.planes[0].shape[0]]
        for dst, (_, image) in zip(canvas, p.rects()):
            x, y, _, _ = image
            args += [dst.ctypes.data + y * dst.strides[0] + x, dst.strides[0]]
        args += [p.image[2], p.image[3], LIBYUV_BOX]
        calls.append(args)
    scale = libyuv.I420Scale

    def draw() -> None:
        for p, args in zip(case.placed, calls):
            for dst, (tile, image), bg in zip(canvas, p.rects(), BACKGROUND):
                fill_bars(dst, tile, image, bg)
            if scale(*args) != 0:
                raise RuntimeError(f"libyuv I420Scale failed for tile {p.tile}")

    return draw


def draw_read(case: Case) -> Callable[[], None]:
    """Read every source plane once (copied into one small reused buffer), draw nothing.

    Any resize has to read these bytes, so kernel/read near 1 means the kernel waits on memory
    rather than on arithmetic. It is a rough floor: numpy copies row by row without
    prefetching ahead, so a kernel that prefetches can come in below it.
    """
    largest = max(src.size for p in case.placed for src in p.planes)
    scratch = np.empty(largest, np.uint8)

    def draw() -> None:
        for p in case.placed:
            for src in p.planes:
                np.copyto(scratch[: src.size].reshape(src.shape), src)

    return draw


# ---------------------------------------------------------------------------------------------
# ffmpeg: scale + pad per tile, xstack, over one raw frame per tile looped in the graph


class FfmpegRun:
    """Builds a case's canvas in an ffmpeg process; times it per canvas from two frame counts."""

    def __init__(self, binary: str, case: Case, folder: Path) -> None:
        self.binary = binary
        self.case = case
        self.inputs: list[str] = []
        for index, p in enumerate(case.placed):
            path = folder / f"tile{index}.yuv"
            with path.open("wb") as raw:
                for plane in p.planes:
                    raw.write(np.ascontiguousarray(plane).tobytes())
            self.inputs += [
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", size_name(case.source),
                "-framerate", "25", "-i", str(path),
            ]  # fmt: skip
        self.extra = FFMPEG_FIRST_EXTRA

    def graph(self) -> str:
        chains = []
        positions = []
        for index, p in enumerate(self.case.placed):
            tx, ty, tw, th = p.tile
            ix, iy, iw, ih = p.image
            chains.append(
                f"[{index}:v]loop=loop=-1:size=1:start=0,"
                f"scale={iw}:{ih}:flags=area,"
                f"pad={tw}:{th}:{ix - tx}:{iy - ty}:color=black[t{index}]"
            )
            positions.append(f"{tx}_{ty}")
        labels = "".join(f"[t{index}]" for index in range(len(self.case.placed)))
        stack = f"{labels}xstack=inputs={len(positions)}:layout={'|'.join(positions)}[out]"
        return ";".join([*chains, stack])

    def command(self, frames: int, output: Sequence[str]) -> list[str]:
        return [
            self.binary, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-filter_complex_threads", "1", "-threads", "1",
            *self.inputs,
            "-filter_complex", self.graph(), "-map", "[out]",
            "-frames:v", str(frames), *output,
        ]  # fmt: skip

    def _seconds(self, frames: int) -> float:
        start = time.perf_counter()
        subprocess.run(self.command(frames, ["-f", "null", "-"]), check=True, capture_output=True)
        return time.perf_counter() - start

    def first_canvas(self) -> bytes:
        done = subprocess.run(
            self.command(1, ["-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]),
            check=True,
            capture_output=True,
        )
        return done.stdout

    def calibrate(self) -> None:
        """Pick how many extra frames the long run makes, so that they take about the budget.

        Grows the count until the extra frames clearly stand out of the startup noise, then
        scales it to the budget.
        """
        budget = FFMPEG_EXTRA_SECONDS
        extra = FFMPEG_FIRST_EXTRA
        while True:
            spent = self._seconds(FFMPEG_SHORT_FRAMES + extra)
            spent -= self._seconds(FFMPEG_SHORT_FRAMES)
            if spent >= budget / 2 or extra >= FFMPEG_MAX_EXTRA:
                break
            extra = min(FFMPEG_MAX_EXTRA, extra * 4)
        if spent > 0:
            extra = round(extra * budget / spent)
        self.extra = max(FFMPEG_FIRST_EXTRA, min(FFMPEG_MAX_EXTRA, extra))

    def sample(self) -> float:
        """Seconds per canvas: the run with more frames minus the short one, per extra frame."""
        short = self._seconds(FFMPEG_SHORT_FRAMES)
        long = self._seconds(FFMPEG_SHORT_FRAMES + self.extra)
        if long <= short:
            # noise swallowed the difference: fall back to the long run's whole time per frame
            logger.warning("ffmpeg: long run not slower than short run; using an upper bound")
            return long / (FFMPEG_SHORT_FRAMES + self.extra)
        return (long - short) / self.extra


# ---------------------------------------------------------------------------------------------
# one case


def max_diff(a: Planes, b: Planes) -> int:
    """Largest difference between two canvases, over all three planes."""
    return max(
        int(np.abs(one.astype(np.int16) - other.astype(np.int16)).max()) for one, other in zip(a, b)
    )


def canvas_from_bytes(data: bytes, width: int, height: int) -> Planes:
    canvas = new_canvas(width, height)
    offset = 0
    for plane in canvas:
        plane[...] = np.frombuffer(data, np.uint8, plane.size, offset).reshape(plane.shape)
        offset += plane.size
    return canvas


def run_case(
    case: Case,
    rounds: Rounds,
    cv2: ModuleType | None,
    libyuv: ctypes.CDLL | None,
    ffmpeg: str | None,
    scratch: Path,
) -> list[common.Row]:
    """Time every available method on one case; one row per method."""
    width, height = case.canvas
    canvases = {name: new_canvas(width, height) for name in METHODS}
    draws: dict[str, Callable[[], None]] = {
        "kernel": draw_kernel(case, canvases["kernel"]),
        "swscale": draw_swscale(case, canvases["swscale"]),
        "numpy": draw_numpy(case, canvases["numpy"]),
        "floor": draw_floor(case, canvases["floor"]),
        "read": draw_read(case),
    }
    if cv2 is not None:
        draws["opencv"] = draw_opencv(case, canvases["opencv"], cv2)
    if libyuv is not None:
        draws["libyuv"] = draw_libyuv(case, canvases["libyuv"], libyuv)

    # draw once each (the warm-up), and compare every canvas with the numpy reference
    for draw in draws.values():
        draw()
    diffs: dict[str, int | None] = {
        name: max_diff(canvases[name], canvases["numpy"]) for name in draws if name != "read"
    }
    diffs["read"] = None  # draws no canvas

    samples = {name: common.timed(draw) for name, draw in draws.items()}
    wanted = {name: rounds.fast for name in samples}
    wanted["numpy"] = rounds.numpy

    if ffmpeg is not None:
        folder = scratch / f"{case.layout}-{size_name(case.canvas)}-{size_name(case.source)}"
        folder.mkdir()
        run = FfmpegRun(ffmpeg, case, folder)
        made = canvas_from_bytes(run.first_canvas(), width, height)
        diffs["ffmpeg"] = max_diff(made, canvases["numpy"])
        if rounds.ffmpeg_extra is None:
            run.calibrate()
        else:
            run.extra = rounds.ffmpeg_extra
        samples["ffmpeg"] = run.sample
        wanted["ffmpeg"] = rounds.ffmpeg

    # the first draws above were the warm-up
    seconds = common.interleave(samples, wanted, warmup=0)
    return [
        {
            **case.names,
            "method": name,
            "ms_median": common.median_ms(seconds[name]),
            "rounds": len(seconds[name]),
            "tiles": len(case.placed),
            "max_diff_vs_numpy": diffs[name],
        }
        for name in METHODS
        if name in seconds
    ]


# ---------------------------------------------------------------------------------------------
# report


def verdicts(case: Case, ms: dict[str, float]) -> dict[str, object]:
    """Kernel ratios of one case, and the targets that apply to it with PASS/FAIL."""
    kernel = ms.get("kernel")
    vs_opencv = common.ratio(kernel, ms.get("opencv"))
    vs_swscale = common.ratio(kernel, ms.get("swscale"))
    vs_floor = common.ratio(kernel, ms.get("floor"))
    vs_libyuv = common.ratio(kernel, ms.get("libyuv"))
    vs_read = common.ratio(kernel, ms.get("read"))
    targets = []
    if (case.layout, case.canvas) == TARGET_LAYOUT and case.shrinks:
        targets.append(
            f"vs opencv <= {TARGET_VS_OPENCV}x {common.verdict(vs_opencv, TARGET_VS_OPENCV)}"
        )
        targets.append(
            f"vs swscale <= {TARGET_VS_SWSCALE}x {common.verdict(vs_swscale, TARGET_VS_SWSCALE)}"
        )
    if case.exact_half:
        targets.append(
            f"exact 2x: vs floor <= {TARGET_VS_FLOOR}x {common.verdict(vs_floor, TARGET_VS_FLOOR)}"
        )
    return {
        **case.names,
        "kernel/opencv": vs_opencv,
        "kernel/swscale": vs_swscale,
        "kernel/libyuv": vs_libyuv,
        "kernel/floor": vs_floor,
        "kernel/read": vs_read,
        "targets": "; ".join(targets) or "-",
    }


def load_cv2() -> ModuleType | None:
    try:
        import cv2  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    cv2.setNumThreads(1)
    return cv2  # type: ignore[no-any-return,unused-ignore]


def all_cases(layouts: dict[str, Layout], pictures: Sequence[av.VideoFrame]) -> Iterator[Case]:
    for name, canvas in CASES:
        for source in SOURCES:
            yield build_case(layouts[name], canvas, source, pictures)


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument(
        "--simd",
        choices=_mix._SIMD_LEVELS,
        help="run the kernel at this SIMD level (default: the best this CPU has)",
    )
    options = args.parse_args(argv)
    if options.simd is not None:
        _mix._simd(options.simd)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rounds = QUICK_ROUNDS if options.quick else DEFAULT_ROUNDS
    if options.rounds is not None:
        # the slow methods keep their few rounds unless fewer are asked for
        chosen = options.rounds
        rounds = replace(
            rounds,
            fast=chosen,
            numpy=min(chosen, rounds.numpy),
            ffmpeg=min(chosen, rounds.ffmpeg),
        )

    cv2 = load_cv2()
    libyuv = load_libyuv()
    ffmpeg = shutil.which("ffmpeg")
    notes = [
        f"kernel: mcu._mix (compiled {Path(_mix.__file__).name}), SIMD level {_mix._simd()}",
        "opencv: skipped, cv2 is not importable (pip install -e '.[bench]')"
        if cv2 is None
        else f"opencv: {cv2.__version__}, INTER_AREA, 1 thread",
        f"swscale: PyAV {av.__version__}, AREA",
        "libyuv: skipped, no libyuv shared library (Debian: apt install libyuv0)"
        if libyuv is None
        else f"libyuv: {libyuv._name}, I420Scale with kFilterBox",
        "ffmpeg: skipped, no ffmpeg binary on PATH"
        if ffmpeg is None
        else f"ffmpeg: {ffmpeg}, scale flags=area + pad + xstack, 1 filter thread",
        f"numpy: mcu._mix_ref with numpy {np.__version__} (BLAS threads as configured)",
        "floor: pictures scaled beforehand, only bars and copies timed",
        "read: every source plane read once (numpy copy into a small reused buffer), no canvas",
    ]
    for note in notes:
        print(note)

    layouts = load_layouts(LAYOUTS)
    pictures = decode_pictures(max(layouts[name].capacity for name, _ in CASES))
    rows: list[common.Row] = []
    summary: list[dict[str, object]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcu-bench-") as scratch:
        for case in all_cases(layouts, pictures):
            case_rows = run_case(case, rounds, cv2, libyuv, ffmpeg, Path(scratch))
            rows += case_rows
            ms = {str(row["method"]): float(row["ms_median"]) for row in case_rows}
            summary.append(verdicts(case, ms))
            names = " ".join(case.names.values())
            print(f"  done: {names}", file=sys.stderr, flush=True)

    columns = ["layout", "canvas", "source", "method", "ms_median", "rounds", "max_diff_vs_numpy"]
    ratios = [
        "layout", "canvas", "source",
        "kernel/opencv", "kernel/swscale", "kernel/libyuv", "kernel/floor", "kernel/read",
    ]  # fmt: skip
    print()
    print(common.table(rows, columns))
    print()
    print(common.table(summary, [*ratios, "targets"]))
    print()
    took = time.perf_counter() - started
    print(f"ms per canvas: median of interleaved rounds; whole run {took:.0f} s")
    if options.json is not None:
        common.write_json(options.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
