"""The operator's API: JSON over HTTP under /api/, behind the operator's bearer token.

    GET    /api/rooms                                   rooms and how many sites are present
    POST   /api/rooms                                   an ad-hoc room; one join link per site
    GET    /api/rooms/{room}                            the room and its roster with live stats
    DELETE /api/rooms/{room}                            hang everyone up (ad-hoc rooms go away)
    PUT    /api/rooms/{room}/layout    {"layout": "1+5"}
    PUT    /api/rooms/{room}/chair     {"site": "tong-cuc" | null}
    PUT    /api/rooms/{room}/pins      {"pins": {"1": "ha-giang"}}   (tiles numbered from 1)
    POST   /api/rooms/{room}/sites/{site}/mute         {"audio": true, "video": false}
    POST   /api/rooms/{room}/sites/{site}/disconnect

No token or a wrong one: 401. A site's token: 403 (sites never steer rooms). A body that is not
the JSON expected: 400 naming the field. Every change is logged at INFO as an operator action.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from aiohttp import web

from .auth import bearer_token, hash_token, new_token
from .config import ID_EXPECTED, ID_PATTERN, Config, RoomConfig, SiteConfig
from .exceptions import McuError, OfferError
from .layout import LayoutLibrary
from .ratelimit import FailureLimiter
from .room import Room
from .sdp import check_offer

logger = logging.getLogger(__name__)

TOKEN_ENV = "MCU_OPERATOR_TOKEN"
DEFAULT_BLOCK_SECONDS = 60  # a disconnected site's page would otherwise dial straight back


class BadRequest(Exception):
    """A request body the API cannot use; the message names the field."""


def operator_token_sha256(config: Config) -> str | None:
    """The SHA-256 of the operator's token, from the configured file or the environment."""
    path = config.server.operator_token_file
    if path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise McuError(f"{config.path}: server.operator_token_file: cannot read {path}: "
                           f"{exc.strerror}") from None
        if not token:
            raise McuError(f"{config.path}: server.operator_token_file: {path} is empty")
        return hash_token(token)
    token = os.environ.get(TOKEN_ENV, "").strip()
    return hash_token(token) if token else None


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class OperatorApi:
    """Routes of the operator API over the server's rooms."""

    def __init__(
        self,
        config: Config,
        rooms: MutableMapping[str, Room],
        layouts: LayoutLibrary,
        make_room: Callable[[RoomConfig], Room],
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter or FailureLimiter()
        self.rooms = rooms
        self.layouts = layouts
        self._make_room = make_room
        self._token_sha256 = operator_token_sha256(config)
        self._site_tokens = {site.token_sha256 for room in config.rooms.values()
                             for site in room.sites}
        self.adhoc: set[str] = set()
        if self._token_sha256 is None:
            logger.info("operator API off: set %s or server.operator_token_file to use it",
                        TOKEN_ENV)

    def routes(self) -> list[web.RouteDef]:
        guard = self._guarded
        return [
            web.get("/api/rooms", guard(self.list_rooms)),
            web.post("/api/rooms", guard(self.create_room)),
            web.get("/api/rooms/{room}", guard(self.show_room)),
            web.delete("/api/rooms/{room}", guard(self.close_room)),
            web.put("/api/rooms/{room}/layout", guard(self.set_layout)),
            web.put("/api/rooms/{room}/chair", guard(self.set_chair)),
            web.put("/api/rooms/{room}/pins", guard(self.set_pins)),
            web.post("/api/rooms/{room}/sites/{site}/mute", guard(self.mute)),
            web.post("/api/rooms/{room}/sites/{site}/disconnect", guard(self.disconnect)),
            web.post("/api/rooms/{room}/viewers", guard(self.add_viewer)),
            web.delete("/api/rooms/{room}/viewers/{viewer}", guard(self.remove_viewer)),
        ]

    # --- access -------------------------------------------------------------------------------

    def authorise(self, request: web.Request) -> web.Response | None:
        """None when the request carries the operator's token, else the refusal."""
        address = request.remote or "?"
        wait = self.limiter.retry_after(address)
        if wait is not None:
            return _error(429, f"too many failed attempts from {address}: try again in "
                               f"{wait:.0f} s")
        token = bearer_token(request.headers.get("Authorization"))
        if self._token_sha256 is None:
            return _error(401, f"operator API disabled: set {TOKEN_ENV} or "
                               "server.operator_token_file")
        if token is None:
            self.limiter.failed(address)
            return _error(401, "missing bearer token: send 'Authorization: Bearer <operator "
                               "token>'")
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._token_sha256):
            return None
        if digest in self._site_tokens:
            logger.warning("site token used on the operator API from %s", request.remote)
            return _error(403, "a site token cannot use the operator API")
        self.limiter.failed(address)
        logger.warning("wrong operator token from %s", request.remote)
        return _error(401, "wrong operator token")

    def _guarded(self, handler: Callable[..., Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self.authorise(request)
            if refusal is not None:
                return refusal
            try:
                response: web.StreamResponse = await handler(request)
            except BadRequest as exc:
                return _error(400, str(exc))
            except McuError as exc:
                return _error(400, str(exc))
            return response

        return guarded

    def _room(self, request: web.Request) -> Room:
        room = self.rooms.get(request.match_info["room"])
        if room is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no room "
                                   f"{request.match_info['room']!r}"}),
                                   content_type="application/json")
        return room

    @staticmethod
    async def _body(request: web.Request, *allowed: str) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body: expected a JSON object ({exc})") from None
        if not isinstance(body, dict):
            raise BadRequest(f"body: expected a JSON object, got {type(body).__name__}")
        for key in body:
            if key not in allowed:
                raise BadRequest(f"{key}: unknown field; expected {', '.join(allowed)}")
        return body

    # --- reading ------------------------------------------------------------------------------

    async def list_rooms(self, request: web.Request) -> web.Response:
        return _json({"rooms": [self._summary(room) for room in self.rooms.values()]})

    def _summary(self, room: Room) -> dict[str, Any]:
        return {
            "id": room.id,
            "name": room.config.name,
            "layout": room.layout_name,
            "chair": room.chair,
            "present": len(room.roster),
            "configured": len(room.config.sites),
            "adhoc": room.id in self.adhoc,
        }

    async def show_room(self, request: web.Request) -> web.Response:
        room = self._room(request)
        layout = room.current_layout(len(room.roster))
        detail = self._summary(room) | {
            "layout_shown": layout.name,
            "layouts": self.layouts.names,
            "tiles": layout.capacity,
            "pins": {str(index + 1): site for index, site in sorted(room.pins.items())},
            "floor": room.floor,
            "self_view": room.config.self_view,
            "sites": [self._roster_entry(room, site_config) for site_config in room.config.sites],
        }
        return _json(detail)

    @staticmethod
    def _roster_entry(room: Room, config: SiteConfig) -> dict[str, Any]:
        site = room.sites.get(config.id)
        entry: dict[str, Any] = {
            "site": config.id,
            "name": config.name,
            "state": "absent",
            "profile": config.profile or room.config.profile,
            "muted_audio": config.id in room.muted_audio,
            "muted_video": config.id in room.muted_video,
            "speaking": False,
            "on_screen": config.id in room.visible,
        }
        if site is None:
            return entry
        stats = site.stats
        entry |= {
            "state": getattr(stats, "state", None) or site.pc.connectionState,
            "profile": site.profile.name,
            "codec": site.codec,
            "kbps_in": _rounded(getattr(stats, "kbps_in", None)),
            "kbps_out": _rounded(getattr(stats, "kbps_out", None)),
            "uplink_budget_kbps": _rounded(None if site.remb_sent_bps is None
                                           else site.remb_sent_bps / 1000),
            "packets_lost": getattr(stats, "packets_lost", None),
            "jitter_ms": _rounded(_ms(getattr(stats, "jitter_seconds", None))),
            "rtt_ms": _rounded(_ms(getattr(stats, "rtt_seconds", None) or site.rtt)),
            "fps_in": _rounded(getattr(stats, "fps_in", None)),
            "fps_out": _rounded(getattr(stats, "fps_out", None)),
            "level_dbov": round(site.level_dbov, 1),
            "speaking": site.id == room.floor or site.level_dbov > -50,
        }
        return entry

    # --- operator actions ---------------------------------------------------------------------

    async def set_layout(self, request: web.Request) -> web.Response:
        room = self._room(request)
        body = await self._body(request, "layout")
        layout = body.get("layout")
        if not isinstance(layout, str):
            raise BadRequest("layout: expected a layout name (a string)")
        if layout not in self.layouts.names:
            raise BadRequest(f"layout: no layout {layout!r}; expected one of: "
                             f"{', '.join(self.layouts.names)}")
        logger.info("operator: room=%s set layout %s", room.id, layout)
        room.set_layout(layout)
        return _json(self._summary(room))

    async def set_chair(self, request: web.Request) -> web.Response:
        room = self._room(request)
        body = await self._body(request, "site")
        if "site" not in body:
            raise BadRequest("site: missing; expected a site id or null")
        site = body["site"]
        if site is not None and (not isinstance(site, str) or room.config.site(site) is None):
            raise BadRequest(f"site: expected one of the room's sites or null, got {site!r}")
        logger.info("operator: room=%s set chair %s", room.id, site)
        room.set_chair(site)
        return _json(self._summary(room))

    async def set_pins(self, request: web.Request) -> web.Response:
        room = self._room(request)
        body = await self._body(request, "pins")
        pins = body.get("pins")
        if not isinstance(pins, dict):
            raise BadRequest('pins: expected an object of tile number to site, e.g. {"1": '
                             '"ha-giang"}, or {} to clear')
        parsed: dict[int, str] = {}
        for tile, site in pins.items():
            if not re.fullmatch(r"[1-9][0-9]*", str(tile)):
                raise BadRequest(f"pins.{tile}: expected a tile number from 1")
            if not isinstance(site, str) or room.config.site(site) is None:
                raise BadRequest(f"pins.{tile}: expected one of the room's sites, got {site!r}")
            parsed[int(tile) - 1] = site
        logger.info("operator: room=%s set pins %s", room.id, pins)
        room.set_pins(parsed)
        return _json(self._summary(room))

    async def mute(self, request: web.Request) -> web.Response:
        room = self._room(request)
        site = request.match_info["site"]
        if room.config.site(site) is None:
            return _error(404, f"no site {site!r} in room {room.id!r}")
        body = await self._body(request, "audio", "video")
        changes = {}
        for kind in ("audio", "video"):
            value = body.get(kind)
            if value is not None and not isinstance(value, bool):
                raise BadRequest(f"{kind}: expected true or false")
            changes[kind] = value
        if changes["audio"] is None and changes["video"] is None:
            raise BadRequest("audio, video: expected at least one of them, true or false")
        logger.info("operator: room=%s site=%s mute %s", room.id, site,
                    {k: v for k, v in changes.items() if v is not None})
        room.mute(site, audio=changes["audio"], video=changes["video"])
        return _json({"site": site, "muted_audio": site in room.muted_audio,
                      "muted_video": site in room.muted_video})

    async def disconnect(self, request: web.Request) -> web.Response:
        room = self._room(request)
        site = request.match_info["site"]
        block = DEFAULT_BLOCK_SECONDS
        if request.can_read_body:
            body = await self._body(request, "block_seconds")
            block = body.get("block_seconds", DEFAULT_BLOCK_SECONDS)
            if isinstance(block, bool) or not isinstance(block, (int, float)) or not (
                    0 <= block <= 86400):
                raise BadRequest("block_seconds: expected seconds from 0 to 86400")
        logger.info("operator: room=%s site=%s disconnect (refused for %s s)", room.id, site,
                    block)
        if not await room.disconnect(site, block_seconds=float(block)):
            return _error(404, f"site {site!r} is not in room {room.id!r}")
        return _json({"site": site, "state": "disconnected", "block_seconds": block})

    async def add_viewer(self, request: web.Request) -> web.Response:
        """A receive-only preview: SDP offer in, SDP answer out (like a site's dial-in)."""
        room = self._room(request)
        if request.content_type != "application/sdp":
            return _error(415, "offer must be sent as Content-Type: application/sdp")
        limit = self.config.server.max_offer_bytes
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return _error(413, f"offer larger than {limit} bytes")
        try:
            offer = body.decode("utf-8")
            check_offer(offer)
            viewer, answer = await room.watch(offer)
        except UnicodeDecodeError:
            return _error(400, "offer is not UTF-8 text")
        except (OfferError, ValueError) as exc:
            return _error(400, str(exc).splitlines()[0] if str(exc) else "offer rejected")
        logger.info("operator: room=%s preview %s", room.id, viewer.id)
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": f"/api/rooms/{room.id}/viewers/{viewer.id}"})

    async def remove_viewer(self, request: web.Request) -> web.Response:
        room = self._room(request)
        if not await room.stop_watching(request.match_info["viewer"]):
            return _error(404, f"no viewer {request.match_info['viewer']!r}")
        return web.Response(status=204)

    async def close_room(self, request: web.Request) -> web.Response:
        room = self._room(request)
        logger.info("operator: room=%s close", room.id)
        for site in [s.id for s in room.roster]:
            await room.disconnect(site, "room closed by the operator")
        removed = room.id in self.adhoc
        if removed:
            del self.rooms[room.id]
            self.adhoc.discard(room.id)
            await room.close()
        return _json({"room": room.id, "closed": True, "removed": removed})

    async def create_room(self, request: web.Request) -> web.Response:
        body = await self._body(request, "name", "sites", "layout", "profile", "chair", "id")
        config = self._adhoc_config(body)
        tokens = {}
        sites = []
        for site in config.sites:
            token, digest = new_token()
            tokens[site.id] = token
            sites.append(SiteConfig(site.id, site.name, digest, site.profile))
        config = RoomConfig(config.id, config.name, config.layout, config.profile, config.chair,
                            tuple(sites), config.self_view)
        room = self._make_room(config)
        self._site_tokens |= {site.token_sha256 for site in sites}
        self.rooms[config.id] = room
        self.adhoc.add(config.id)
        room.start()
        base = self.config.server.public_url or f"{request.scheme}://{request.host}"
        links = [
            {"site": site.id, "name": site.name,
             "url": f"{base}/join/{config.id}/{site.id}#token={tokens[site.id]}"}
            for site in config.sites
        ]
        logger.info("operator: ad-hoc room=%s created with %d sites", config.id, len(links))
        return _json({"room": config.id, "name": config.name, "links": links}, 201)

    def _adhoc_config(self, body: dict[str, Any]) -> RoomConfig:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: expected the room's name (a non-empty string)")
        room_id = body.get("id") or _slug(name)
        if not isinstance(room_id, str) or not ID_PATTERN.fullmatch(room_id):
            raise BadRequest(f"id: expected {ID_EXPECTED}, got {room_id!r}")
        if room_id in self.rooms:
            raise BadRequest(f"id: a room {room_id!r} exists already")
        profile = body.get("profile", "low" if "low" in self.config.profiles
                           else next(iter(self.config.profiles)))
        if profile not in self.config.profiles:
            raise BadRequest(f"profile: expected one of {', '.join(self.config.profiles)}, "
                             f"got {profile!r}")
        layout = body.get("layout", "auto")
        if layout not in self.layouts.names:
            raise BadRequest(f"layout: no layout {layout!r}")
        wanted = body.get("sites")
        if not isinstance(wanted, list) or not wanted:
            raise BadRequest("sites: expected a non-empty list of site ids")
        known = {site.id: site for room in self.config.rooms.values() for site in room.sites}
        sites: list[SiteConfig] = []
        for index, site_id in enumerate(wanted):
            site = known.get(site_id) if isinstance(site_id, str) else None
            if site is None:
                raise BadRequest(f"sites[{index}]: no configured site {site_id!r}")
            if any(s.id == site_id for s in sites):
                raise BadRequest(f"sites[{index}]: {site_id!r} is listed twice")
            sites.append(SiteConfig(site.id, site.name, site.token_sha256, None))
        chair = body.get("chair")
        if chair is not None and chair not in wanted:
            raise BadRequest(f"chair: expected one of the listed sites, got {chair!r}")
        return RoomConfig(room_id, name.strip(), layout, profile, chair, tuple(sites))


def _slug(name: str) -> str:
    plain = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_only = "".join(c for c in plain if unicodedata.category(c) != "Mn").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")[:50] or "room"
    return f"adhoc-{slug}"


def _ms(seconds: float | None) -> float | None:
    return seconds * 1000 if seconds is not None else None


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
