"""Dial-in error paths: each bad request gets its status and a one-line reason, and the site that is
already in the room keeps receiving its composite throughout."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from mcu.dial import Call
from mcu.sources import ColourTrack, ToneTrack

from .conftest import room_config, site_token, url

SITES = ["hq", "north"]


async def real_offer() -> str:
    """An offer as aiortc makes it (VP8/H264 video, opus audio, host candidates)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def only_codec(sdp: str, kind: str, name: str, pt: int) -> str:
    """Rewrite the `kind` section of an offer so it offers only codec `name`."""
    out, section = [], None
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line[2:].split()[0]
            if section == kind:
                parts = line.split()
                line = " ".join([*parts[:3], str(pt)])
                out.append(line)
                out.append(f"a=rtpmap:{pt} {name}/90000")
                continue
        if section == kind and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


async def post(session: aiohttp.ClientSession, target: str, body: str | bytes,
               token: str | None, content_type: str = "application/sdp") -> tuple[int, str]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(target, data=body, headers=headers) as reply:
        return reply.status, await reply.text()


@pytest.mark.timeout(120)
async def test_bad_requests_are_refused_and_the_room_keeps_serving(mcu_server) -> None:
    server = await mcu_server(room_config(SITES))
    present = Call(url(server, "test", "hq"), site_token("hq"),
                   video=ColourTrack((82, 90, 240)), audio=ToneTrack(440))
    await present.connect()
    offer = await real_offer()
    good = url(server, "test", "north")
    try:
        await present.wait_video(5, timeout=15)
        cases = [
            ("no token", good, offer, None, "application/sdp", 401, "missing bearer token"),
            ("wrong token", good, offer, "nope", "application/sdp", 401, "wrong token"),
            ("other site's token", good, offer, site_token("hq"), "application/sdp", 401,
             "wrong token for site 'north'"),
            ("unknown room", url(server, "nowhere", "north"), offer, site_token("north"),
             "application/sdp", 404, "no room 'nowhere'"),
            ("unknown site", url(server, "test", "ghost"), offer, site_token("north"),
             "application/sdp", 404, "no site 'ghost'"),
            ("not SDP", good, "hello", site_token("north"), "application/sdp", 400,
             "must start with 'v=0'"),
            ("no media", good, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
             site_token("north"), "application/sdp", 400, "no audio or video media section"),
            ("VP9 only", good, only_codec(offer, "video", "VP9", 98), site_token("north"),
             "application/sdp", 400, "no supported video codec (offered: VP9); accepted: VP8"),
            ("AV1 only", good, only_codec(offer, "video", "AV1", 45), site_token("north"),
             "application/sdp", 400, "accepted: VP8, H264"),
            ("truncated", good, offer[: len(offer) // 3], site_token("north"),
             "application/sdp", 400, "offer rejected"),
            ("too big", good, offer + "a=x:" + "y" * 30000 + "\r\n", site_token("north"),
             "application/sdp", 413, "larger than 20000 bytes"),
            ("wrong type", good, offer, site_token("north"), "text/plain", 415,
             "Content-Type: application/sdp"),
            ("not UTF-8", good, b"v=0\r\n\xff\xfe", site_token("north"), "application/sdp", 400,
             "not UTF-8"),
        ]
        async with aiohttp.ClientSession() as http:
            for what, target, body, token, ctype, status, reason in cases:
                before = present.video_frames
                got, text = await post(http, target, body, token, ctype)
                assert (got, reason in text) == (status, True), f"{what}: {got} {text!r}"
                assert text.count("\n") == 1, f"{what}: reason is not one line: {text!r}"
                # the site already present is not disturbed
                await present.wait_video(2, timeout=5)
                assert present.video_frames > before

            # hanging up a session that is not the site's current one
            async with http.delete(url(server, "test", "hq") + "/sessions/bogus",
                                   headers={"Authorization": f"Bearer {site_token('hq')}"}) as r:
                assert r.status == 404
            async with http.delete(present.location or "",
                                   headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
        assert [s.id for s in server.rooms["test"].roster] == ["hq"]
        assert present.location is not None
    finally:
        await present.hang_up()
    await asyncio.sleep(0.2)
    assert server.rooms["test"].roster == ()


@pytest.mark.timeout(60)
async def test_health_reports_sites_present(mcu_server) -> None:
    server = await mcu_server(room_config(SITES))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/health") as reply:
            assert reply.status == 200
            assert await reply.json() == {"status": "ok", "sites_present": {"test": 0}}


@pytest.mark.timeout(60)
async def test_answer_offers_only_the_configured_address_and_port_range(mcu_server) -> None:
    server = await mcu_server(room_config(SITES))
    async with aiohttp.ClientSession() as http:
        status, answer = await post(http, url(server, "test", "north"), await real_offer(),
                                    site_token("north"))
    assert status == 201, answer
    candidates = [line.split() for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert candidates, "a non-trickle answer carries its candidates"
    for fields in candidates:
        address, port, kind = fields[4], int(fields[5]), fields[7]
        assert (address, kind) == ("127.0.0.1", "host")
        assert 42000 <= port <= 42999
    await server.rooms["test"].close()
