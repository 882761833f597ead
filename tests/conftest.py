"""Shared fixtures: a real MCU server on 127.0.0.1 with a small room of test sites."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mcu import ice
from mcu.config import Config, parse_config
from mcu.server import Server

LAYOUTS = Path(__file__).resolve().parents[1] / "layouts"


def site_token(site: str) -> str:
    return f"test-token-{site}"


def room_config(
    sites: list[str],
    *,
    layout: str = "2x2",
    width: int = 320,
    height: int = 180,
    fps: int = 15,
    room: str = "test",
    extra: str = "",
    self_view: bool = True,
    profile: str = "small",
) -> Config:
    """A config with one room of `sites` (first is chair), each with token `test-token-<site>`."""
    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        'media_addresses = ["127.0.0.1"]',
        "rtp_ports = [42000, 42999]",
        "max_offer_bytes = 20000",
        f'layouts = "{LAYOUTS}"',
        "",
        "[profiles.small]",
        f"width = {width}",
        f"height = {height}",
        f"fps = {fps}",
        "video_kbps = 400",
        "audio_kbps = 64",
        "",
        f"[rooms.{room}]",
        'name = "Phòng thử"',
        f'layout = "{layout}"',
        f'profile = "{profile}"',
        f'chair = "{sites[0]}"',
        f"self_view = {str(self_view).lower()}",
    ]
    for site in sites:
        digest = hashlib.sha256(site_token(site).encode()).hexdigest()
        lines += [
            "",
            f"[rooms.{room}.sites.{site}]",
            f'name = "Điểm cầu {site}"',
            f'token_sha256 = "{digest}"',
        ]
    return parse_config("\n".join(lines) + "\n" + extra, Path("test.toml"))


@pytest.fixture
async def mcu_server() -> AsyncIterator[Callable[..., object]]:
    """Start servers built from `room_config(...)`; every one is closed after the test."""
    started: list[Server] = []
    threads_before = {t.name for t in threading.enumerate()}

    async def start(config: Config) -> Server:
        server = Server(config)
        await server.start()
        started.append(server)
        return server

    yield start

    for server in started:
        await server.close()
    ice.reset()

    # every clock thread a room started is gone once the room is closed
    ours = ("video-", "audio-", "encode-")
    leftover = [t.name for t in threading.enumerate()
                if t.name not in threads_before and t.name.startswith(ours)]
    assert not leftover, f"threads outlived their rooms: {leftover}"


def url(server: Server, room: str, site: str) -> str:
    return f"http://127.0.0.1:{server.port}/rooms/{room}/sites/{site}"
