"""Fuzzing the entry points a stranger can reach: the SDP checks and the dial-in endpoint."""

from __future__ import annotations

import random

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from mcu.exceptions import OfferError
from mcu.sdp import check_offer, parse_sections

from .conftest import room_config, site_token, url

FIXED = [
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "m=audio 9 RTP/AVP 111",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "m=video 0 RTP/AVP 96", "a=rtpmap:96 VP8/90000",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:97 H264/90000", "a=rtpmap:98 VP9/90000", "m=application 9 DTLS/SCTP 5000",
    "a=ice-ufrag:x", "c=IN IP4 127.0.0.1", "m=", "a=", "=", "m=video x", "a=rtpmap:",
]
SDP_LINES = st.one_of(st.sampled_from(FIXED), st.text(max_size=60))


@settings(max_examples=400, deadline=None)
@given(st.lists(SDP_LINES, max_size=20), st.sampled_from(["\r\n", "\n", "\r"]))
def test_offer_checks_either_accept_or_say_why(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    try:
        check_offer(text)
    except OfferError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 300
    else:
        # accepted: it really has a usable audio or video section
        assert any(s.kind in ("audio", "video") and s.port for s in parse_sections(text))


async def test_fuzzed_dial_ins_never_break_the_server(mcu_server) -> None:
    server = await mcu_server(room_config(["hq", "north"]))
    target = url(server, "test", "north")
    rng = random.Random(2026)
    samples = [b"v=0\r\n" * 5000, b"", b"\x00" * 100]
    for _ in range(20):
        samples.append(rng.randbytes(rng.randrange(1, 3000)))
        samples.append("".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(200)).encode())
        lines = ["v=0"] + [rng.choice(FIXED) for _ in range(rng.randrange(1, 25))]
        samples.append("\r\n".join(lines).encode())
    statuses = set()
    async with aiohttp.ClientSession() as http:
        for body in samples:
            headers = {"Content-Type": "application/sdp",
                       "Authorization": f"Bearer {site_token('north')}"}
            async with http.post(target, data=body, headers=headers) as reply:
                text = await reply.text()
                statuses.add(reply.status)
                assert reply.status in (201, 400, 413), (reply.status, text[:200])
                if reply.status == 201:
                    location = reply.headers["Location"]
                    async with http.delete(f"http://127.0.0.1:{server.port}{location}",
                                           headers=headers) as gone:
                        assert gone.status == 204
        async with http.get(f"http://127.0.0.1:{server.port}/health") as reply:
            assert reply.status == 200
    assert 400 in statuses
