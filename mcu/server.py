"""The running MCU: rooms from the config, the HTTP front, start and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer

from . import ice, metrics
from .api import OperatorApi
from .config import Config, RoomConfig
from .exceptions import McuError
from .layout import load_library
from .pages import Pages
from .ratelimit import FailureLimiter
from .room import Room
from .signaling import Signaling
from .tasks import stop_tasks

logger = logging.getLogger(__name__)


class Server:
    """Rooms plus their HTTP endpoints. `start()` listens; `close()` hangs everyone up."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.layouts = load_library(config.server.layouts_dir)
        self.ice_servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in config.server.ice_servers
        ]
        self.rooms: dict[str, Room] = {
            room_id: self.make_room(room) for room_id, room in config.rooms.items()
        }
        self.limiter = FailureLimiter()  # failed logins per address, shared by both front doors
        self.signaling = Signaling(self.rooms, config.server.max_offer_bytes, self.limiter)
        self.api = OperatorApi(config, self.rooms, self.layouts, self.make_room, self.limiter)
        self.app = web.Application(client_max_size=config.server.max_offer_bytes)
        self.app.add_routes(self.signaling.routes())
        self.app.add_routes(self.api.routes())

        # Prometheus: the same operator token as the API (the figures name every site)
        self.metrics = metrics.make_registry(lambda: self.rooms.values())
        self.app[metrics.REGISTRY] = self.metrics
        self.app.router.add_get("/metrics", self._metrics)
        self._loop_watch: asyncio.Task[None] | None = None
        self.app.add_routes(Pages(self).routes())
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.scheme = "http"

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        refusal = self.api.authorise(request)
        if refusal is not None:
            return refusal
        return await metrics.metrics_handler(request)

    def make_room(self, room: RoomConfig) -> Room:
        return Room(room, self.config.profiles, self.layouts, self.ice_servers)

    async def start(self) -> None:
        server = self.config.server
        port_range = (server.rtp_port_min, server.rtp_port_max) if server.rtp_port_min else None
        ice.configure(list(server.media_addresses), port_range)
        for room in self.rooms.values():
            room.start()
        self._loop_watch = asyncio.ensure_future(metrics.watch_event_loop(self.metrics))
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        tls = None
        if server.tls_cert is not None and server.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(server.tls_cert, server.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise McuError(f"{self.config.path}: server.tls_cert/tls_key: cannot use "
                               f"{server.tls_cert} with {server.tls_key}: {exc}") from None
        site = web.TCPSite(self._runner, server.host, server.port, ssl_context=tls)
        await site.start()
        # the port actually bound, for a config that asked for port 0
        bound: Any = site._server
        sockets = bound.sockets if bound is not None else []
        self.port = int(sockets[0].getsockname()[1]) if sockets else server.port
        self.scheme = "https" if tls else "http"
        logger.info("listening on %s://%s:%d with %d rooms", self.scheme, server.host, self.port,
                    len(self.rooms))

    async def close(self) -> None:
        if self._loop_watch is not None:
            await stop_tasks([self._loop_watch])
        await asyncio.gather(*(room.close() for room in self.rooms.values()))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        logger.info("stopped")


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then close every session."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        await stop.wait()
        logger.info("shutting down")
    finally:
        await server.close()
