"""The browser pages (join, link test, operator console) and the small backend they need.

    GET    /join/{room}/{site}                          the join page (token in the #fragment)
    GET    /linktest/{room}/{site}                      the link test page
    GET    /console                                     the operator console
    GET    /web/{file}                                  the pages' CSS and JavaScript
    GET    /rooms/{room}/sites/{site}/profile           site token → the site's profile, JSON
    POST   /linktest/{room}/{site}                      site token, SDP offer → 201 echo answer
    DELETE /linktest/{room}/{site}/sessions/{echo}      end a link test early → 204

The pages are plain files from `mcu/web/`, served as they are: only names listed in that folder are
ever read, so no request path can reach another file. The site endpoints refuse exactly as dial-in
does (401 without or with a wrong token, 404 for an unknown room or site, 413/415/400 for offers).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .config import ID_PATTERN
from .exceptions import OfferError
from .linktest import DURATION, Echo
from .sdp import check_offer
from .tasks import stop_tasks

if TYPE_CHECKING:
    from .room import Room
    from .server import Server

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
MAX_ECHOES = 4  # link tests running at once; each decodes and encodes a camera
SDP = "application/sdp"

# the pages load only their own files, and talk only to this server
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}

PAGES_KEY: web.AppKey[Pages]


def _refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)


class Pages:
    """Routes of the pages and of the link test; owns the running echo peers."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.max_offer_bytes = server.config.server.max_offer_bytes
        self.echoes: dict[str, Echo] = {}  # by "room/site": one link test per site at a time
        self.echo_seconds = DURATION
        self._files = {path.name: path for path in WEB_DIR.iterdir()
                       if path.is_file() and path.suffix in CONTENT_TYPES}
        self._watchers: set[asyncio.Task[None]] = set()
        server.app[PAGES_KEY] = self
        server.app.on_shutdown.append(self._shutdown)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/join/{room}/{site}", self.join_page),
            web.get("/linktest/{room}/{site}", self.linktest_page),
            web.get("/console", self.console_page),
            web.get("/web/{file}", self.asset),
            web.get("/rooms/{room}/sites/{site}/profile", self.profile),
            web.post("/linktest/{room}/{site}", self.start_linktest),
            web.delete("/linktest/{room}/{site}/sessions/{echo}", self.stop_linktest),
        ]

    # --- files --------------------------------------------------------------------------------

    def _file(self, name: str) -> web.Response:
        path = self._files.get(name)
        if path is None:
            return _refuse(404, "not found", **SECURITY_HEADERS)
        return web.Response(body=path.read_bytes(), content_type=CONTENT_TYPES[path.suffix],
                            charset="utf-8", headers=SECURITY_HEADERS)

    async def join_page(self, request: web.Request) -> web.Response:
        return self._site_page(request, "join.html")

    async def linktest_page(self, request: web.Request) -> web.Response:
        return self._site_page(request, "linktest.html")

    def _site_page(self, request: web.Request, name: str) -> web.Response:
        # only the shape of the ids is checked: the page itself learns nothing without a token
        ids = (request.match_info["room"], request.match_info["site"])
        if not all(ID_PATTERN.fullmatch(part) for part in ids):
            return _refuse(404, "not found", **SECURITY_HEADERS)
        return self._file(name)

    async def console_page(self, request: web.Request) -> web.Response:
        return self._file("console.html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name.endswith(".html"):  # pages only under their own routes
            return _refuse(404, "not found", **SECURITY_HEADERS)
        return self._file(name)

    # --- the site's side ----------------------------------------------------------------------

    def authorise(self, request: web.Request) -> tuple[Room, str] | web.Response:
        # the same checks and refusals as dial-in, so a page sees one behaviour
        return self.server.signaling.authorise(request)

    async def profile(self, request: web.Request) -> web.Response:
        authorised = self.authorise(request)
        if isinstance(authorised, web.Response):
            return authorised
        room, site_id = authorised
        profile = room.profiles[room.config.profile_of(site_id)]
        site = room.config.site(site_id)
        return web.json_response({
            "name": profile.name,
            "width": profile.width,
            "height": profile.height,
            "fps": profile.fps,
            "video_kbps": profile.video_kbps,
            "audio_kbps": profile.audio_kbps,
            "room_name": room.config.name,
            "site_name": site.name if site is not None else site_id,
        }, headers={"Cache-Control": "no-store"})

    async def start_linktest(self, request: web.Request) -> web.Response:
        # check the declared size before reading anything
        if request.content_length is not None and request.content_length > self.max_offer_bytes:
            return _refuse(413, f"offer larger than {self.max_offer_bytes} bytes")
        authorised = self.authorise(request)
        if isinstance(authorised, web.Response):
            return authorised
        room, site_id = authorised

        if request.content_type != SDP:
            return _refuse(415, f"offer must be sent as Content-Type: {SDP}", Accept=SDP)
        body = await request.content.read(self.max_offer_bytes + 1)
        if len(body) > self.max_offer_bytes:
            return _refuse(413, f"offer larger than {self.max_offer_bytes} bytes")
        try:
            offer = body.decode("utf-8")
            check_offer(offer)
        except UnicodeDecodeError:
            return _refuse(400, "offer is not UTF-8 text")
        except OfferError as exc:
            return _refuse(400, str(exc))

        # a second test of the same site replaces the first; a few sites at once at most
        key = f"{room.id}/{site_id}"
        old = self.echoes.pop(key, None)
        if old is not None:
            await old.close()
        if len(self.echoes) >= MAX_ECHOES:
            wait = f"{self.echo_seconds:.0f}"
            return _refuse(503, f"{MAX_ECHOES} link tests are running; try again in {wait} s",
                           **{"Retry-After": wait})

        # registered before answering, so tests arriving together are counted
        echo = Echo(room.id, site_id, self.server.ice_servers, self.echo_seconds)
        self.echoes[key] = echo
        self._own(self._forget_when_closed(key, echo))
        try:
            answer = await echo.answer(offer)
        except Exception as exc:
            await echo.close()
            reason = _unusable_offer(exc)
            if reason is None:
                raise
            logger.info("room=%s site=%s link test offer refused: %s", room.id, site_id, reason)
            return _refuse(400, f"offer rejected: {reason}")
        location = f"/linktest/{room.id}/{site_id}/sessions/{echo.id}"
        return web.Response(status=201, text=answer, content_type=SDP,
                            headers={"Location": location, "Cache-Control": "no-store"})

    async def stop_linktest(self, request: web.Request) -> web.Response:
        authorised = self.authorise(request)
        if isinstance(authorised, web.Response):
            return authorised
        room, site_id = authorised
        key = f"{room.id}/{site_id}"
        echo = self.echoes.get(key)
        if echo is None or echo.id != request.match_info["echo"]:
            return _refuse(404, f"no running link test {request.match_info['echo']!r} for site "
                                f"{site_id!r}")
        del self.echoes[key]
        await echo.close()
        return web.Response(status=204)

    def _own(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coroutine)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _forget_when_closed(self, key: str, echo: Echo) -> None:
        await echo.closed.wait()
        if self.echoes.get(key) is echo:
            del self.echoes[key]

    async def _shutdown(self, app: web.Application) -> None:
        echoes = list(self.echoes.values())
        self.echoes.clear()
        await asyncio.gather(*(echo.close() for echo in echoes), return_exceptions=True)
        await stop_tasks(self._watchers)


PAGES_KEY = web.AppKey("pages", Pages)


def _unusable_offer(exc: Exception) -> str | None:
    """The one-line reason when `exc` says the offer cannot be used, else None."""
    # aiortc signals unusable offers with plain errors or its own exception classes
    if not isinstance(exc, (ValueError, TypeError, KeyError, IndexError)) and \
            not type(exc).__module__.startswith("aiortc"):
        return None
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
