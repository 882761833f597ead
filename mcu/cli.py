"""The `mcu` command: serve, token, dial, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import logs
from .exceptions import McuError

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcu", description="Multipoint control unit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the MCU")
    serve.add_argument("--config", required=True, type=Path, help="TOML config file")

    commands.add_parser("token", help="print a new site token and the hash for the config")

    layouts = commands.add_parser("layouts", help="list the layouts and layout groups")
    layouts.add_argument("--dir", type=Path, default=None,
                         help="layouts folder (default: the repository's layouts/)")
    layouts.add_argument("--preview", type=Path, metavar="DIR",
                         help="also draw each layout as DIR/<name>.png (and DIR/index.png)")

    dial = commands.add_parser("dial", help="dial a room as a site")
    dial.add_argument("url", help="http://HOST:PORT/rooms/ROOM/sites/SITE")
    dial.add_argument("--token", default=os.environ.get("MCU_TOKEN"),
                      help="the site's token (default: $MCU_TOKEN)")
    dial.add_argument("--video", type=Path, help="media file whose video is sent (looped)")
    dial.add_argument("--audio", type=Path,
                      help="media file whose audio is sent (looped; default: the --video file)")
    dial.add_argument("--audio-kbps", type=int, default=32,
                      help="Opus rate of the sent audio, mono with in-band FEC (default 32)")
    dial.add_argument("--max-width", type=int, default=1280,
                      help="scale sent video down to this width (default 1280)")
    dial.add_argument("--record", type=Path, help="write what is received to this file (.mp4)")
    dial.add_argument("--codec", choices=["vp8", "h264"],
                      help="video codec to prefer (default: aiortc's order, VP8 first)")
    dial.add_argument("--duration", type=float, default=30.0, help="seconds before hanging up")
    dial.add_argument("--media-address", action="append", default=None,
                      help="local address to offer as ICE host candidate (repeatable; "
                           "default: 127.0.0.1 when the MCU is on loopback)")

    commands.add_parser("demo", help="run the four-site demo on 127.0.0.1 (mcu demo --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        # the demo parses its own options
        from .demo import main as demo_main

        return demo_main(argv[1:])
    args = _parser().parse_args(argv)
    logs.configure(args.verbose)
    try:
        if args.command == "serve":
            return _serve(args.config)
        if args.command == "token":
            return _token()
        if args.command == "layouts":
            return _layouts(args.dir, args.preview)
        if args.command == "dial":
            return _run(_dial(args))
    except McuError as exc:
        print(f"mcu: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _serve(path: Path) -> int:
    from .config import load_config
    from .server import serve

    config = load_config(path)

    async def run() -> int:
        await serve(config)
        return 0

    return _run(run())


def _token() -> int:
    from .auth import new_token

    token, digest = new_token()
    print(f"token        = {token}")
    print(f'token_sha256 = "{digest}"')
    print(
        "For a site: give it the token and put token_sha256 in its [rooms.<room>.sites.<site>]"
        " table. For the operator: set MCU_OPERATOR_TOKEN to the token (or write it to the file"
        " named by server.operator_token_file).",
        file=sys.stderr,
    )
    return 0


def _layouts(directory: Path | None, preview: Path | None) -> int:
    from .config import DEFAULT_LAYOUTS_DIR
    from .layout import load_library

    library = load_library(directory or DEFAULT_LAYOUTS_DIR)
    for name, layout in sorted(library.layouts.items()):
        roles = sorted({t.role for t in layout.tiles if t.role})
        extra = f"  [{', '.join(roles)}]" if roles else ""
        tiles = "tile " if layout.capacity == 1 else "tiles"
        print(f"{name:14} {layout.capacity:3} {tiles}  {layout.description}{extra}")
    for name, group in sorted(library.groups.items()):
        steps = ", ".join(
            f"{lo}{'+' if hi is None else '' if hi == lo else f'-{hi}'}: {layout}"
            for lo, hi, layout in group.steps
        )
        print(f"{name:14} group      {group.description} ({steps})")
    if preview is not None:
        from .preview import write_previews

        written = write_previews(library.layouts, preview)
        print(f"wrote {len(written)} previews to {preview}", file=sys.stderr)
    return 0


async def _dial(args: argparse.Namespace) -> int:
    import aiohttp

    from . import ice
    from .dial import Call
    from .sources import FileTrack, OpusTrack

    if not args.token:
        raise McuError("no token: pass --token or set MCU_TOKEN")
    addresses = args.media_address or _loopback_for(args.url)
    if addresses:
        ice.configure(addresses, None)
    for path in (args.video, args.audio):
        if path is not None and not path.is_file():
            raise McuError(f"no such media file: {path}")
    video = FileTrack(args.video, "video", max_width=args.max_width) if args.video else None
    audio_file = args.audio or args.video
    audio = None
    if audio_file and _has_audio(audio_file):
        try:
            audio = OpusTrack(FileTrack(audio_file, "audio"), args.audio_kbps)
        except ValueError as exc:
            raise McuError(f"--audio-kbps {args.audio_kbps}: {exc}") from None
    call = Call(args.url, args.token, video=video, audio=audio, record=args.record)
    if args.codec:
        from aiortc import RTCRtpSender

        wanted = f"video/{args.codec}".lower()
        call.video_codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs
                             if c.mimeType.lower() == wanted]
    try:
        await call.connect()
    except aiohttp.ClientError as exc:
        raise McuError(f"cannot reach the MCU at {args.url}: {exc}") from None
    try:
        # until the duration is over, or the MCU ends the call
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.ended.wait(), args.duration)
        ended_by_mcu = call.ended.is_set()
        stats = await call.stats()
    finally:
        await call.hang_up()
    if ended_by_mcu:
        print(f"site {stats.site}: the MCU ended the call after {stats.seconds:.0f} s",
              file=sys.stderr)
    print(f"site {stats.site}: {stats.video_frames} frames {stats.width}x{stats.height} "
          f"({stats.fps:.1f} fps), {stats.kbps_in:.0f} kbit/s in, {stats.kbps_out:.0f} kbit/s out, "
          f"audio {stats.audio_dbov:.1f} dBov")
    return 0 if stats.video_frames and not ended_by_mcu else 1


def _loopback_for(url: str) -> list[str]:
    """127.0.0.1 when the MCU is on this machine's loopback (aioice skips loopback otherwise)."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return []
    return ["127.0.0.1"] if address.is_loopback else []


def _has_audio(path: Path) -> bool:
    import av

    with av.open(str(path)) as container:
        return bool(container.streams.audio)
