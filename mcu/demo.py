"""`make demo`: start an MCU and let four offices of the agency hold a short meeting in it.

Each site sends a sample clip and a Vietnamese sentence from espeak-ng, records the composite and
the mix it receives, and leaves a snapshot of its composite. A table of what every site received
closes the run; the exit code says whether every site saw the others.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import av

from . import ice, logs, media
from .config import Config, load_config
from .dial import Call, CallStats
from .exceptions import ConfigError
from .sources import FileTrack

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "conf" / "demo.toml"
DEFAULT_OUT = REPO / "out" / "demo"
ROOM = "demo"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
MAX_WIDTH = 640

EXIT_NO_VIDEO = 1
EXIT_SETUP = 2


@dataclass(frozen=True)
class DemoSite:
    """What one office sends in the demo."""

    id: str
    clip: str
    voice: str
    sentence: str


SITES = (
    DemoSite(
        "tong-cuc",
        "carphone_pristine.mp4",
        "vi",
        "Xin chào các đồng chí. Tổng cục Thi hành án dân sự xin khai mạc cuộc họp giao ban "
        "trực tuyến.",
    ),
    DemoSite(
        "ha-giang",
        "bikes.mp4",
        "vi+f2",
        "Xin chào, đây là Cục Thi hành án dân sự tỉnh Hà Giang. Chúng tôi nghe và nhìn rõ.",
    ),
    DemoSite(
        "thua-thien-hue",
        "bigbuckbunny.mp4",
        "vi-vn-x-central",
        "Cục Thi hành án dân sự tỉnh Thừa Thiên Huế xin báo cáo kết quả công tác tháng này.",
    ),
    DemoSite(
        "dong-van",
        "carphone_distorted.mp4",
        "vi-vn-x-south+f3",
        "Chi cục Thi hành án dân sự huyện Đồng Văn đã kết nối. Đề nghị Tổng cục cho ý kiến "
        "chỉ đạo.",
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every site received composite video."""
    args = _parser().parse_args(argv)
    logs.configure(verbose=False)
    try:
        return asyncio.run(_demo(args.config.resolve(), args.out.resolve(), args.duration))
    except ConfigError as exc:
        logger.error("demo not run: %s", exc)
        return EXIT_SETUP
    except (KeyboardInterrupt, asyncio.CancelledError):
        logger.warning("demo interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcu demo", description="Four sites meet in a local MCU for a few seconds."
    )
    parser.add_argument(
        "--duration", type=_positive, default=15.0, help="seconds of meeting (default 15)"
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="MCU config (default conf/demo.toml)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default out/demo)"
    )
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


async def _demo(config_path: Path, out: Path, duration: float) -> int:
    # SIGTERM (a CI timeout) ends the meeting like Ctrl-C: hang up, stop the server
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    config = load_config(config_path)
    base_url = _base_url(config)
    problem = _room_problem(config)
    if problem:
        logger.error("demo not run: %s", problem)
        return EXIT_SETUP
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any call is up

    # media first: a missing clip or espeak-ng should stop us before a server is started
    try:
        sources = await asyncio.to_thread(_prepare_media, out / "media")
    except (FileNotFoundError, RuntimeError) as exc:
        logger.error("demo not run: %s", exc)
        return EXIT_SETUP

    server = await _start_server(config_path, base_url, out / "mcu.log")
    if server is None:
        return EXIT_SETUP
    calls: list[Call] = []
    try:
        ice.configure(["127.0.0.1"], None)
        for site in SITES:
            clip, speech = sources[site.id]
            calls.append(
                Call(
                    f"{base_url}/rooms/{ROOM}/sites/{site.id}",
                    f"demo-{site.id}",
                    video=FileTrack(clip, "video", max_width=MAX_WIDTH),
                    audio=FileTrack(speech, "audio"),
                    record=out / f"{site.id}.mp4",
                )
            )
        failed = await _connect_all(calls)

        # the meeting: a snapshot of every composite halfway through
        await asyncio.sleep(duration / 2)
        await _snapshots(calls, out)
        await asyncio.sleep(duration - duration / 2)

        stats = [await call.stats() for call in calls]
    finally:
        # the server is stopped even when a hang-up fails or we are cancelled meanwhile
        try:
            await asyncio.gather(*(call.hang_up() for call in calls), return_exceptions=True)
        finally:
            ice.reset()
            await asyncio.to_thread(_stop_server, server)

    print(_table(stats, out))
    silent = [s.site for s in stats if s.video_frames == 0]
    for site_id in silent:
        reason = failed.get(site_id, "no composite frame arrived")
        logger.error("site=%s received no composite video: %s", site_id, reason)
    return EXIT_NO_VIDEO if silent else 0


def _base_url(config: Config) -> str:
    host = config.server.host
    # a server listening on every interface is reached on loopback here
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _room_problem(config: Config) -> str | None:
    """Why the config cannot host the demo, or None."""
    room = config.rooms.get(ROOM)
    if room is None:
        return f"{config.path}: no room {ROOM!r} (rooms: {', '.join(config.rooms)})"
    missing = [site.id for site in SITES if room.site(site.id) is None]
    if missing:
        return f"{config.path}: room {ROOM!r} lacks sites {', '.join(missing)}"
    return None


def _prepare_media(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Clip and speech file of every demo site."""
    prepared = {}
    for site in SITES:
        speech = media.speech_wav(site.sentence, folder / f"{site.id}.wav", voice=site.voice)
        prepared[site.id] = (media.clip(site.clip), speech)
    return prepared


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


async def _start_server(config_path: Path, base_url: str, log_path: Path) -> _Server | None:
    """Start `mcu serve` and wait until its health check answers 200; None if it did not."""
    health = f"{base_url}/health"
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        # something else answering on our port would pass our health check
        if await _healthy(http, health):
            logger.error("%s already answers: another MCU is running there", base_url)
            return None

        log = log_path.open("wb")
        command = [sys.executable, "-m", "mcu", "serve", "--config", str(config_path)]
        logger.info("starting the MCU: %s (log %s)", " ".join(command), log_path)
        # spawning returns at once; the server is then polled without blocking
        process = subprocess.Popen(  # noqa: ASYNC220
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        server = _Server(process, log, log_path)

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                log.close()
                logger.error(
                    "the MCU exited with code %s before it was ready; end of %s:\n%s",
                    process.returncode,
                    log_path,
                    _tail(log_path),
                )
                return None
            if await _healthy(http, health):
                logger.info("MCU ready at %s", base_url)
                return server
            if time.monotonic() > deadline:
                await asyncio.to_thread(_stop_server, server)
                logger.error(
                    "%s did not answer 200 within %.0f s; end of %s:\n%s",
                    health,
                    START_TIMEOUT,
                    log_path,
                    _tail(log_path),
                )
                return None
            await asyncio.sleep(0.2)


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as reply:
            return reply.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


def _stop_server(server: _Server) -> None:
    """SIGTERM, then SIGKILL when the MCU does not exit in time (blocking)."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("the MCU ignored SIGTERM for %.0f s; killing it", STOP_TIMEOUT)
            process.kill()
            process.wait()
    server.log.close()
    logger.info("MCU stopped with code %s", process.returncode)


def _tail(path: Path, lines: int = 20) -> str:
    with path.open("rb") as log:
        last = deque(log, maxlen=lines)
    return b"".join(last).decode("utf-8", "replace").rstrip()


async def _connect_all(calls: list[Call]) -> dict[str, str]:
    """Dial every site at once; return why each failed site could not connect."""
    results = await asyncio.gather(*(call.connect() for call in calls), return_exceptions=True)
    failed = {}
    for call, result in zip(calls, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            logger.error("site=%s could not connect: %s", call.site, result)
            failed[call.site] = str(result) or type(result).__name__
    return failed


async def _snapshots(calls: list[Call], out: Path) -> None:
    for call in calls:
        frame = call.latest_video
        if frame is None:
            logger.warning("site=%s has no composite yet, no snapshot", call.site)
            continue
        path = out / f"{call.site}.png"
        # PNG encoding is CPU work: keep it off the event loop
        await asyncio.to_thread(_save_png, frame, path)
        logger.info("site=%s snapshot %s (%dx%d)", call.site, path, frame.width, frame.height)


def _save_png(frame: av.VideoFrame, path: Path) -> None:
    frame.to_image().save(path)  # type: ignore[no-untyped-call]


def _table(stats: list[CallStats], out: Path) -> str:
    header = ("site", "frames", "fps", "kbit/s in", "kbit/s out", "audio dBov", "recording")
    rows = [header]
    for s in stats:
        rows.append(
            (
                s.site,
                str(s.video_frames),
                f"{s.fps:.1f}",
                f"{s.kbps_in:.0f}",
                f"{s.kbps_out:.0f}",
                f"{s.audio_dbov:.1f}",
                str(out / f"{s.site}.mp4"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i in (0, len(header) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
