"""The operator API as an operator's tools use it: auth, reading rooms, steering them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from mcu.dial import Call
from mcu.sources import ColourTrack, ToneTrack

from .analysis import tone_power
from .conftest import room_config, site_token, url

OPERATOR = "operator-secret-for-tests"
SITES = ["hq", "north", "centre"]
TONES = {"hq": 430.0, "north": 610.0, "centre": 830.0}


@pytest.fixture
async def api_server(mcu_server, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCU_OPERATOR_TOKEN", OPERATOR)
    return await mcu_server(room_config(SITES))


async def call_api(server: Any, method: str, path: str, token: str | None = OPERATOR,
                   body: object = None, raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"http://127.0.0.1:{server.port}{path}", headers=headers,
                                json=body if raw is None else None, data=raw) as reply:
            return reply.status, await reply.json(content_type=None)


ENDPOINTS = [
    ("GET", "/api/rooms", None),
    ("POST", "/api/rooms", {"name": "x", "sites": ["hq"]}),
    ("GET", "/api/rooms/test", None),
    ("DELETE", "/api/rooms/test", None),
    ("PUT", "/api/rooms/test/layout", {"layout": "1x1"}),
    ("PUT", "/api/rooms/test/chair", {"site": "hq"}),
    ("PUT", "/api/rooms/test/pins", {"pins": {}}),
    ("POST", "/api/rooms/test/sites/hq/mute", {"audio": True}),
    ("POST", "/api/rooms/test/sites/hq/disconnect", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_refuses_missing_wrong_and_site_tokens(
        api_server, method: str, path: str, body: object) -> None:
    status, reply = await call_api(api_server, method, path, token=None, body=body)
    assert (status, "missing bearer token" in reply["error"]) == (401, True)
    status, reply = await call_api(api_server, method, path, token="guess", body=body)
    assert (status, reply["error"]) == (401, "wrong operator token")
    status, reply = await call_api(api_server, method, path, token=site_token("hq"), body=body)
    assert (status, reply["error"]) == (403, "a site token cannot use the operator API")
    # nothing changed
    room = api_server.rooms["test"]
    assert (room.layout_name, room.muted_audio, room.chair) == ("2x2", frozenset(), "hq")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/api/rooms/test/layout", {"layuot": "1x1"},
         "layuot: unknown field; expected layout"),
        ("PUT", "/api/rooms/test/layout", {}, "layout: expected a layout name"),
        ("PUT", "/api/rooms/test/layout", {"layout": "9x9"}, "layout: no layout '9x9'"),
        ("PUT", "/api/rooms/test/chair", {"sit": "hq"}, "sit: unknown field; expected site"),
        ("PUT", "/api/rooms/test/chair", {}, "site: missing"),
        ("PUT", "/api/rooms/test/chair", {"site": "ghost"}, "site: expected one of the room's"),
        ("PUT", "/api/rooms/test/pins", {"pins": {"0": "hq"}}, "pins.0: expected a tile number"),
        ("PUT", "/api/rooms/test/pins", {"pins": {"1": "ghost"}}, "pins.1: expected one of"),
        ("PUT", "/api/rooms/test/pins", {"pins": ["hq"]}, "pins: expected an object"),
        ("POST", "/api/rooms/test/sites/hq/mute", {"audio": "yes"}, "audio: expected true or"),
        ("POST", "/api/rooms/test/sites/hq/mute", {}, "audio, video: expected at least one"),
        ("POST", "/api/rooms", {"sites": ["hq"]}, "name: expected the room's name"),
        ("POST", "/api/rooms", {"name": "Họp", "sites": []}, "sites: expected a non-empty list"),
        ("POST", "/api/rooms", {"name": "Họp", "sites": ["hq", "zz"]},
         "sites[1]: no configured site 'zz'"),
        ("POST", "/api/rooms", {"name": "Họp", "sites": ["hq"], "profile": "huge"},
         "profile: expected one of small"),
        ("POST", "/api/rooms", {"name": "Họp", "sites": ["hq"], "id": "test"},
         "id: a room 'test' exists already"),
        ("PUT", "/api/rooms/test/layout", [1, 2], "body: expected a JSON object, got list"),
    ],
)
async def test_bad_bodies_name_the_field(api_server, method: str, path: str, body: object,
                                         field: str) -> None:
    status, reply = await call_api(api_server, method, path, body=body)
    assert status == 400, reply
    assert field in reply["error"], reply


async def test_malformed_json_is_a_400(api_server) -> None:
    status, reply = await call_api(api_server, "PUT", "/api/rooms/test/layout", raw=b"{layout")
    assert status == 400 and reply["error"].startswith("body: expected a JSON object")


async def test_unknown_room_and_site_are_404(api_server) -> None:
    status, reply = await call_api(api_server, "GET", "/api/rooms/nowhere")
    assert (status, reply["error"]) == (404, "no room 'nowhere'")
    status, reply = await call_api(api_server, "POST", "/api/rooms/test/sites/ghost/mute",
                                   body={"audio": True})
    assert (status, reply["error"]) == (404, "no site 'ghost' in room 'test'")


@pytest.mark.timeout(120)
async def test_operator_reads_the_roster_mutes_and_disconnects(api_server) -> None:
    calls = {site: Call(url(api_server, "test", site), site_token(site),
                        video=ColourTrack((100, 128, 128)), audio=ToneTrack(TONES[site], 0.2))
             for site in SITES}
    await asyncio.gather(*(call.connect() for call in calls.values()))
    room = api_server.rooms["test"]
    try:
        await asyncio.gather(*(call.wait_video(10, timeout=20) for call in calls.values()))
        await asyncio.sleep(2.5)
        status, rooms = await call_api(api_server, "GET", "/api/rooms")
        assert status == 200
        assert rooms["rooms"] == [{"id": "test", "name": "Phòng thử", "layout": "2x2",
                                   "chair": "hq", "present": 3, "configured": 3,
                                   "adhoc": False}]
        status, detail = await call_api(api_server, "GET", "/api/rooms/test")
        assert [s["site"] for s in detail["sites"]] == SITES
        north = detail["sites"][1]
        assert north["name"] == "Điểm cầu north" and north["state"] == "connected"
        assert north["profile"] == "small" and north["codec"] == "vp8"
        # the upload it was asked for: what the MCU last told it, in kbit/s
        budget = room.sites["north"].remb_sent_bps
        assert budget >= 64_000
        assert north["uplink_budget_kbps"] == pytest.approx(budget / 1000, abs=0.05)

        # muting north at the MCU takes its tone out of everyone else's mix
        heard = calls["hq"].recent_audio(1.0)
        assert tone_power(heard, TONES["north"]) > 1000 * tone_power(heard, TONES["hq"])
        status, reply = await call_api(api_server, "POST", "/api/rooms/test/sites/north/mute",
                                       body={"audio": True})
        assert (status, reply["muted_audio"]) == (200, True)
        await asyncio.sleep(1.5)
        heard = calls["hq"].recent_audio(1.0)
        assert tone_power(heard, TONES["north"]) < tone_power(heard, TONES["centre"]) / 1000
        status, detail = await call_api(api_server, "GET", "/api/rooms/test")
        assert detail["sites"][1]["muted_audio"] is True

        # layout and pins through the API
        status, _ = await call_api(api_server, "PUT", "/api/rooms/test/layout",
                                   body={"layout": "1+5"})
        assert status == 200 and room.layout_name == "1+5"
        status, _ = await call_api(api_server, "PUT", "/api/rooms/test/pins",
                                   body={"pins": {"1": "centre"}})
        assert status == 200 and room.pins == {0: "centre"}

        # disconnect: the site is gone from the roster, the others stay
        status, reply = await call_api(api_server, "POST",
                                       "/api/rooms/test/sites/centre/disconnect",
                                       body={"block_seconds": 30})
        assert (status, reply["state"]) == (200, "disconnected")
        assert [s.id for s in room.roster] == ["hq", "north"]
        status, _ = await call_api(api_server, "POST", "/api/rooms/test/sites/centre/disconnect")
        assert status == 404
        # its page would dial straight back: refused while the block lasts
        again = Call(url(api_server, "test", "centre"), site_token("centre"),
                     video=ColourTrack((100, 128, 128)))
        with pytest.raises(Exception, match="403 site 'centre' was disconnected by the operator"):
            await again.connect()
        room.blocked.clear()
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))


@pytest.mark.timeout(120)
async def test_an_adhoc_room_gives_join_links_with_fresh_tokens(api_server) -> None:
    status, reply = await call_api(api_server, "POST", "/api/rooms", body={
        "name": "Họp khẩn về lũ lụt", "sites": ["hq", "north"], "layout": "2x2"})
    assert status == 201, reply
    assert reply["room"] == "adhoc-hop-khan-ve-lu-lut"
    links = {link["site"]: link["url"] for link in reply["links"]}
    base = f"http://127.0.0.1:{api_server.port}/join/adhoc-hop-khan-ve-lu-lut/"
    assert set(links) == {"hq", "north"} and links["hq"].startswith(base + "hq#token=")
    token = links["north"].split("#token=", 1)[1]
    assert token != site_token("north"), "a fresh token, not the site's usual one"

    # the link's token dials the new room; the usual token does not
    room_url = f"http://127.0.0.1:{api_server.port}/rooms/adhoc-hop-khan-ve-lu-lut/sites/north"
    call = Call(room_url, token, video=ColourTrack((90, 128, 128)), audio=ToneTrack(500, 0.1))
    await call.connect()
    try:
        await call.wait_video(3, timeout=20)
    finally:
        await call.hang_up()
    refused = Call(room_url, site_token("north"), video=ColourTrack((90, 128, 128)))
    with pytest.raises(Exception, match="401"):
        await refused.connect()

    status, reply = await call_api(api_server, "DELETE", "/api/rooms/adhoc-hop-khan-ve-lu-lut")
    assert (status, reply["removed"]) == (200, True)
    assert "adhoc-hop-khan-ve-lu-lut" not in api_server.rooms
    status, reply = await call_api(api_server, "DELETE", "/api/rooms/test")
    assert (status, reply["removed"]) == (200, False)
    assert "test" in api_server.rooms


@pytest.mark.timeout(120)
async def test_a_preview_viewer_sees_the_composite_and_is_not_a_site(api_server) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    site = Call(url(api_server, "test", "north"), site_token("north"),
                video=ColourTrack((145, 54, 34)), audio=ToneTrack(TONES["north"], 0.2))
    await site.connect()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    frames: list[Any] = []
    drains: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def drain() -> None:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    frames.append(frame)
        drains.append(asyncio.ensure_future(drain()))

    await pc.setLocalDescription(await pc.createOffer())
    room = api_server.rooms["test"]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{api_server.port}/api/rooms/test/viewers",
                                 data=pc.localDescription.sdp,
                                 headers={"Authorization": f"Bearer {OPERATOR}",
                                          "Content-Type": "application/sdp"}) as reply:
                assert reply.status == 201, await reply.text()
                answer = await reply.text()
                location = reply.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(frames) < 5:
            assert loop.time() < deadline, "the preview shows no video"
            await asyncio.sleep(0.1)
        assert (frames[-1].width, frames[-1].height) == (320, 180)
        assert [s.id for s in room.roster] == ["north"], "a viewer takes no tile"
        assert len(room.viewers) == 1
        status, _ = await call_api(api_server, "DELETE", location)
        assert status == 204
        assert room.viewers == {}
    finally:
        await pc.close()
        for task in drains:
            task.cancel()
        await site.hang_up()
