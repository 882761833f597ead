"""HTTP dial-in: a site POSTs its SDP offer and gets the answer; DELETE hangs up.

    POST   /rooms/{room}/sites/{site}                      offer → 201 answer, Location: session
    DELETE /rooms/{room}/sites/{site}/sessions/{session}   → 204
    GET    /health                                         → 200 once rooms are running

Every refusal is a plain-text line naming the problem. The handlers know rooms and sites only by
id; the media is the room's business.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from .auth import bearer_token, token_matches
from .exceptions import OfferError
from .ratelimit import FailureLimiter
from .room import Room
from .sdp import check_offer

logger = logging.getLogger(__name__)

SDP = "application/sdp"


def _refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)


class Signaling:
    """The dial-in endpoints of a set of running rooms."""

    def __init__(self, rooms: Mapping[str, Room], max_offer_bytes: int,
                 limiter: FailureLimiter | None = None) -> None:
        self.rooms = rooms
        self.max_offer_bytes = max_offer_bytes
        self.limiter = limiter or FailureLimiter()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/rooms/{room}/sites/{site}", self.dial),
            web.delete("/rooms/{room}/sites/{site}/sessions/{session}", self.hang_up),
            web.get("/health", self.health),
        ]

    def authorise(self, request: web.Request) -> tuple[Room, str] | web.Response:
        """The room and site the request may act for, or the refusal to send."""
        address = request.remote or "?"
        wait = self.limiter.retry_after(address)
        if wait is not None:
            return _refuse(429, f"too many failed attempts from {address}: try again in "
                                f"{wait:.0f} s", **{"Retry-After": str(max(1, round(wait)))})
        token = bearer_token(request.headers.get("Authorization"))
        challenge = {"WWW-Authenticate": 'Bearer realm="mcu"'}
        if token is None:
            self.limiter.failed(address)
            return _refuse(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           **challenge)
        room_id, site_id = request.match_info["room"], request.match_info["site"]
        room = self.rooms.get(room_id)
        if room is None:
            return _refuse(404, f"no room {room_id!r}")
        site = room.config.site(site_id)
        if site is None:
            return _refuse(404, f"no site {site_id!r} in room {room_id!r}")
        if not token_matches(token, site.token_sha256):
            self.limiter.failed(address)
            logger.warning("room=%s site=%s refused: wrong token from %s", room_id, site_id,
                           request.remote)
            return _refuse(401, f"wrong token for site {site_id!r}", **challenge)
        return room, site_id

    async def dial(self, request: web.Request) -> web.Response:
        # check the declared size before reading anything
        if request.content_length is not None and request.content_length > self.max_offer_bytes:
            return _refuse(413, f"offer larger than {self.max_offer_bytes} bytes")
        authorised = self.authorise(request)
        if isinstance(authorised, web.Response):
            return authorised
        room, site_id = authorised
        wait = room.blocked_for(site_id)
        if wait > 0:
            return _refuse(403, f"site {site_id!r} was disconnected by the operator: it may dial "
                                f"in again in {wait:.0f} s")

        if request.content_type != SDP:
            return _refuse(415, f"offer must be sent as Content-Type: {SDP}",
                           Accept=SDP)
        body = await request.content.read(self.max_offer_bytes + 1)
        if len(body) > self.max_offer_bytes:
            return _refuse(413, f"offer larger than {self.max_offer_bytes} bytes")
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(400, "offer is not UTF-8 text")

        # cheap structural checks first, then aiortc's full parse
        try:
            check_offer(offer)
            site, answer = await room.join(site_id, offer)
        except OfferError as exc:
            return self._bad_offer(room.id, site_id, str(exc))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return self._bad_offer(room.id, site_id, f"offer rejected: {_one_line(exc)}")
        except Exception as exc:
            # aiortc signals unusable offers with its own exception classes
            if type(exc).__module__.startswith("aiortc"):
                return self._bad_offer(room.id, site_id, f"offer rejected: {_one_line(exc)}")
            raise

        location = f"/rooms/{room.id}/sites/{site_id}/sessions/{site.session_id}"
        return web.Response(status=201, text=answer, content_type=SDP,
                            headers={"Location": location})

    def _bad_offer(self, room_id: str, site_id: str, reason: str) -> web.Response:
        logger.info("room=%s site=%s offer refused: %s", room_id, site_id, reason)
        return _refuse(400, reason)

    async def hang_up(self, request: web.Request) -> web.Response:
        authorised = self.authorise(request)
        if isinstance(authorised, web.Response):
            return authorised
        room, site_id = authorised
        if not await room.hang_up(site_id, request.match_info["session"]):
            return _refuse(404, f"no current session {request.match_info['session']!r} "
                                f"for site {site_id!r}")
        return web.Response(status=204)

    async def health(self, request: web.Request) -> web.Response:
        rooms = {room_id: len(room.roster) for room_id, room in self.rooms.items()}
        return web.json_response({"status": "ok", "sites_present": rooms})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
