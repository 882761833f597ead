"""Security of the front doors: failed-login limits, tokens kept out of logs, sites confined to
themselves, and HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

import aiohttp
import pytest

from mcu.config import parse_config
from mcu.dial import Call
from mcu.ratelimit import FailureLimiter
from mcu.sources import ColourTrack, ToneTrack

from .conftest import room_config, site_token, url


def test_the_limiter_counts_failures_in_a_window() -> None:
    limiter = FailureLimiter(max_failures=3, window=10)
    for t in (0.0, 1.0):
        limiter.failed("a", t)
    assert limiter.retry_after("a", 2.0) is None
    limiter.failed("a", 2.0)
    assert limiter.retry_after("a", 3.0) == pytest.approx(7.0)
    assert limiter.retry_after("b", 3.0) is None, "other addresses are not affected"
    assert limiter.retry_after("a", 10.5) is None, "the first failure left the window"


def test_the_limiter_forgets_the_least_recent_address() -> None:
    limiter = FailureLimiter(max_failures=1, window=60, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.failed(address, 0.0)
    assert limiter.retry_after("a", 1.0) is None
    assert limiter.retry_after("c", 1.0) is not None


async def test_guessing_tokens_gets_an_address_refused(mcu_server) -> None:
    server = await mcu_server(room_config(["hq", "north"]))
    target = url(server, "test", "north")
    headers = {"Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        for guess in range(10):
            async with http.post(target, data="v=0\r\n", headers={
                    **headers, "Authorization": f"Bearer guess-{guess}"}) as reply:
                assert reply.status == 401
        # the eleventh try is refused before any token is looked at, even the right one
        async with http.post(target, data="v=0\r\n", headers={
                **headers, "Authorization": f"Bearer {site_token('north')}"}) as reply:
            assert reply.status == 429
            assert int(reply.headers["Retry-After"]) > 0
            assert "too many failed attempts from 127.0.0.1" in await reply.text()


async def test_tokens_never_reach_the_log_and_sites_stay_in_their_room(mcu_server,
                                                                       caplog) -> None:
    caplog.set_level(logging.DEBUG)
    other = room_config(["hq", "north"], room="other")
    config = room_config(["hq", "north"])
    both = config.__class__(config.path, config.server, config.profiles,
                            {"test": config.rooms["test"], "other": other.rooms["other"]})
    server = await mcu_server(both)
    call = Call(url(server, "test", "north"), site_token("north"),
                video=ColourTrack((90, 128, 128)), audio=ToneTrack(440, 0.1))
    await call.connect()
    try:
        await call.wait_video(3, timeout=20)
        # the same site id in another room has its own token... here the same string: a site
        # may dial only the room whose config holds its hash
        intruder = Call(url(server, "other", "hq"), site_token("north"),
                        video=ColourTrack((90, 128, 128)))
        with pytest.raises(Exception, match="401"):
            await intruder.connect()
    finally:
        await call.hang_up()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "north" in text, "the log does speak of the site"
    assert site_token("north") not in text and site_token("hq") not in text


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_https_serves_signaling_with_the_configured_certificate(mcu_server,
                                                                      tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    text = (f'[server]\nlisten = "127.0.0.1:0"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
            '[profiles.p]\nwidth = 320\nheight = 180\nfps = 10\nvideo_kbps = 200\n'
            'audio_kbps = 24\n[rooms.r]\nname = "Phòng"\nprofile = "p"\n'
            f'[rooms.r.sites.a]\nname = "A"\ntoken_sha256 = "{"0" * 64}"\n')
    config = parse_config(text, tmp_path / "tls.toml")
    server = await mcu_server(config)
    assert server.scheme == "https"
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{server.port}/health", ssl=trust) as reply:
            assert reply.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{server.port}/health") as reply:
                await reply.read()


def test_tls_keys_go_together(tmp_path: Path) -> None:
    from mcu.exceptions import ConfigError

    cert, _ = self_signed(tmp_path)
    text = (f'[server]\nlisten = "127.0.0.1:0"\ntls_cert = "{cert}"\n'
            '[profiles.p]\nwidth = 320\nheight = 180\nfps = 10\nvideo_kbps = 200\n'
            'audio_kbps = 24\n[rooms.r]\nname = "Phòng"\nprofile = "p"\n'
            f'[rooms.r.sites.a]\nname = "A"\ntoken_sha256 = "{"0" * 64}"\n')
    with pytest.raises(ConfigError, match=r"server\.tls_key: missing; tls_cert and tls_key go"):
        parse_config(text, tmp_path / "tls.toml")
