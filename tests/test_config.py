"""Configuration: the shipped files, defaults, immutability and every validation rule."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from pathlib import Path

import pytest

from mcu.auth import token_matches
from mcu.config import Config, load_config, parse_config
from mcu.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]
FILE = "test.toml"
HASH_A = hashlib.sha256(b"token-a").hexdigest()
HASH_B = hashlib.sha256(b"token-b").hexdigest()

BASE = f"""\
[server]
listen = "127.0.0.1:8080"

[profiles.low]
width = 640
height = 360
fps = 15
video_kbps = 300
audio_kbps = 24

[profiles.high]
width = 1280
height = 720
fps = 30
video_kbps = 1500
audio_kbps = 48

[rooms.giao-ban]
name = "Giao ban trực tuyến toàn ngành"
layout = "auto"
profile = "low"
chair = "tong-cuc"

[rooms.giao-ban.sites.tong-cuc]
name = "Tổng cục Thi hành án dân sự"
token_sha256 = "{HASH_A}"
profile = "high"

[rooms.giao-ban.sites.ha-giang]
name = "Cục THADS tỉnh Hà Giang"
token_sha256 = "{HASH_B}"
"""


def edited(old: str, new: str) -> str:
    """BASE with one exact piece replaced; fails loudly if the piece is not there."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, FILE)
    return str(caught.value)


def slug(name: str) -> str:
    """ASCII id of a Vietnamese place name: no diacritics, lowercase, words joined by '-'."""
    decomposed = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "-".join(re.findall(r"[a-z0-9]+", ascii_only.lower()))


# --- the shipped configs ---


@pytest.fixture(scope="module")
def agency() -> Config:
    return load_config(REPO / "conf" / "mcu.toml")


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config(REPO / "conf" / "demo.toml")


def test_agency_server_and_profiles(agency: Config) -> None:
    server = agency.server
    assert (server.host, server.port) == ("0.0.0.0", 8080)
    assert server.layouts_dir == REPO / "layouts"
    assert (server.rtp_port_min, server.rtp_port_max) == (40000, 49999)
    sizes = {
        name: (p.width, p.height, p.fps, p.video_kbps, p.audio_kbps)
        for name, p in agency.profiles.items()
    }
    assert sizes == {
        "low": (640, 360, 15, 300, 24),
        "medium": (960, 540, 25, 800, 32),
        "high": (1280, 720, 30, 1500, 48),
    }
    assert all(name == profile.name for name, profile in agency.profiles.items())


def test_agency_briefing_room_has_all_63_provinces(agency: Config) -> None:
    room = agency.rooms["giao-ban"]
    assert room.name == "Giao ban trực tuyến toàn ngành"
    assert (room.layout, room.profile, room.chair) == ("auto", "medium", "tong-cuc")
    assert room.sites[0].id == "tong-cuc"
    assert room.sites[0].name == "Tổng cục Thi hành án dân sự"
    assert room.profile_of("tong-cuc") == "high"
    assert room.profile_of("ha-giang") == "medium"

    names = [site.name for site in room.sites]
    assert len(room.sites) == 64
    assert len(set(names)) == 64
    assert len({site.id for site in room.sites}) == 64

    prefix = re.compile(r"Cục THADS (tỉnh|thành phố) (.+)")
    provincial = [prefix.fullmatch(name) for name in names[1:]]
    assert all(provincial), names
    places = {match[2]: match[1] for match in provincial if match}
    assert len(places) == 63
    cities = {place for place, kind in places.items() if kind == "thành phố"}
    assert cities == {"Hà Nội", "Hồ Chí Minh", "Hải Phòng", "Đà Nẵng", "Cần Thơ"}
    assert places["Thừa Thiên Huế"] == "tỉnh"

    # ids are the ASCII slugs of the place names
    for site, match in zip(room.sites[1:], provincial, strict=True):
        assert match and site.id == slug(match[2])
    ids = {site.id for site in room.sites}
    assert {"ha-giang", "ho-chi-minh", "thua-thien-hue", "ba-ria-vung-tau", "dak-lak"} <= ids
    ha_noi = room.site("ha-noi")
    assert ha_noi is not None and ha_noi.name == "Cục THADS thành phố Hà Nội"


def test_agency_ha_giang_room(agency: Config) -> None:
    room = agency.rooms["ha-giang"]
    assert room.name == "Họp Cục THADS tỉnh Hà Giang với các Chi cục"
    assert (room.profile, room.chair) == ("low", "cuc-ha-giang")
    districts = [
        "Đồng Văn", "Mèo Vạc", "Yên Minh", "Quản Bạ", "Bắc Mê", "Vị Xuyên", "Hoàng Su Phì",
        "Xín Mần", "Bắc Quang", "Quang Bình",
    ]  # fmt: skip
    expected = {"Cục THADS tỉnh Hà Giang", "Chi cục THADS thành phố Hà Giang"} | {
        f"Chi cục THADS huyện {district}" for district in districts
    }
    assert {site.name for site in room.sites} == expected
    assert len(room.sites) == 12
    assert room.site("cuc-ha-giang") is not None


def test_agency_tokens_are_distinct_hashes(agency: Config) -> None:
    hashes = [site.token_sha256 for room in agency.rooms.values() for site in room.sites]
    assert len(hashes) == 76
    assert len(set(hashes)) == len(hashes)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes)
    # the well-known demo tokens must not open the real config
    for room in agency.rooms.values():
        for site in room.sites:
            assert not token_matches(f"demo-{site.id}", site.token_sha256)


def test_demo_config(demo: Config) -> None:
    server = demo.server
    assert (server.host, server.port) == ("127.0.0.1", 8089)
    assert server.media_addresses == ("127.0.0.1",)
    assert (server.rtp_port_min, server.rtp_port_max) == (41000, 41999)
    assert server.layouts_dir == REPO / "layouts"
    profile = demo.profiles["demo"]
    assert (profile.width, profile.height, profile.fps) == (640, 360, 15)
    assert (profile.video_kbps, profile.audio_kbps) == (500, 32)

    room = demo.rooms["demo"]
    assert (room.name, room.layout, room.profile, room.chair) == (
        "Họp thử nghiệm", "2x2", "demo", "tong-cuc",
    )  # fmt: skip
    assert [(site.id, site.name) for site in room.sites] == [
        ("tong-cuc", "Tổng cục Thi hành án dân sự"),
        ("ha-giang", "Cục THADS tỉnh Hà Giang"),
        ("thua-thien-hue", "Cục THADS tỉnh Thừa Thiên Huế"),
        ("dong-van", "Chi cục THADS huyện Đồng Văn"),
    ]
    for site in room.sites:
        assert site.token_sha256 == hashlib.sha256(f"demo-{site.id}".encode()).hexdigest()
        assert token_matches(f"demo-{site.id}", site.token_sha256)
        assert not token_matches("demo-someone-else", site.token_sha256)


def test_shipped_configs_hold_no_plaintext_token() -> None:
    text = (REPO / "conf" / "mcu.toml").read_text(encoding="utf-8")
    assert "token =" not in text and "token=" not in text


# --- defaults, immutability, lookups ---


def test_defaults() -> None:
    config = parse_config(BASE, FILE)
    server = config.server
    assert config.path == Path(FILE)
    assert server.media_addresses == ("127.0.0.1",)
    assert (server.rtp_port_min, server.rtp_port_max) == (40000, 49999)
    assert server.ice_servers == ()
    assert server.max_offer_bytes == 65536
    assert server.layouts_dir == REPO / "layouts"
    room = config.rooms["giao-ban"]
    assert parse_config(edited('layout = "auto"\n', ""), FILE).rooms["giao-ban"].layout == "auto"
    ha_giang = room.site("ha-giang")
    assert ha_giang is not None and ha_giang.profile is None


def test_room_lookups() -> None:
    room = parse_config(BASE, FILE).rooms["giao-ban"]
    assert [site.id for site in room.sites] == ["tong-cuc", "ha-giang"]
    assert room.site("ha-noi") is None
    assert room.profile_of("tong-cuc") == "high"
    assert room.profile_of("ha-giang") == "low"
    with pytest.raises(KeyError):
        room.profile_of("ha-noi")


def test_config_is_immutable() -> None:
    config = parse_config(BASE, FILE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 9000  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rooms["giao-ban"].chair = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.rooms["other"] = config.rooms["giao-ban"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del config.profiles["low"]  # type: ignore[attr-defined]
    assert isinstance(config.rooms["giao-ban"].sites, tuple)


def test_names_keep_diacritics_and_are_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "Cục THADS tỉnh Hà Giang")
    assert decomposed != "Cục THADS tỉnh Hà Giang"
    text = edited('name = "Cục THADS tỉnh Hà Giang"', f'name = "  {decomposed} "')
    site = parse_config(text, FILE).rooms["giao-ban"].site("ha-giang")
    assert site is not None and site.name == "Cục THADS tỉnh Hà Giang"


def test_server_options() -> None:
    text = edited(
        'listen = "127.0.0.1:8080"\n',
        'listen = "[::1]:9000"\nmedia_addresses = ["192.0.2.7", "2001:db8::1"]\n'
        "rtp_ports = [0, 0]\nmax_offer_bytes = 20000\n"
        '[[server.ice_servers]]\nurls = ["stun:stun.example.org:3478"]\n'
        '[[server.ice_servers]]\nurls = "turn:turn.example.org"\nusername = "u"\n'
        'credential = "c"\n',
    )
    server = parse_config(text, FILE).server
    assert (server.host, server.port) == ("::1", 9000)
    assert server.media_addresses == ("192.0.2.7", "2001:db8::1")
    assert (server.rtp_port_min, server.rtp_port_max) == (0, 0)
    assert server.max_offer_bytes == 20000
    assert [ice.urls for ice in server.ice_servers] == [
        ("stun:stun.example.org:3478",),
        ("turn:turn.example.org",),
    ]
    assert (server.ice_servers[1].username, server.ice_servers[1].credential) == ("u", "c")
    assert server.ice_servers[0].username is None


@pytest.mark.parametrize(
    "listen", ["localhost:80", "mcu.example.vn:443", "0.0.0.0:65535", "127.0.0.1:0"]
)
def test_listen_accepts_host_names_and_addresses(listen: str) -> None:
    text = edited('listen = "127.0.0.1:8080"', f'listen = "{listen}"')
    server = parse_config(text, FILE).server
    assert f"{server.host}:{server.port}" == listen


def test_relative_layouts_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "lay").mkdir()
    (tmp_path / "lay" / "wide.toml").write_text("[[tile]]\nx=0\ny=0\nw=1\nh=1\norder=0\n")
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "room.toml"
    path.write_text(
        edited(
            'listen = "127.0.0.1:8080"\n', 'listen = "127.0.0.1:8080"\nlayouts = "../lay"\n'
        ).replace('layout = "auto"', 'layout = "wide"'),
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.server.layouts_dir == (tmp_path / "lay").resolve()
    assert config.rooms["giao-ban"].layout == "wide"

    # a layout that exists only in the default directory is not found in this one
    path.write_text(path.read_text(encoding="utf-8").replace('"wide"', '"2x2"'), encoding="utf-8")
    expected = r"rooms\.giao-ban\.layout: .*group name \(wide\), got '2x2'"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_config(path).rooms["giao-ban"].site("ha-giang") is not None


# --- validation: each rule names file, key and expectation ---


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        # unknown keys
        (
            "video_kbps = 300",
            "vidoe_kbps = 300",
            "profiles.low.vidoe_kbps",
            "unknown key; expected one of: width, height, fps, video_kbps, audio_kbps",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nport = 1',
            "server.port",
            "unknown key; expected one of: listen, media_addresses",
        ),
        (
            'chair = "tong-cuc"',
            'chair = "tong-cuc"\nlayuot = "2x2"',
            "rooms.giao-ban.layuot",
            "unknown key; expected one of: name, layout, profile, chair, self_view, sites",
        ),
        (
            'profile = "high"',
            'profile = "high"\ntoken = "x"',
            "rooms.giao-ban.sites.tong-cuc.token",
            "unknown key; expected one of: name, token_sha256, profile",
        ),
        (
            "[server]",
            "[logging]\nlevel = 1\n[server]",
            "logging",
            "unknown key; expected one of: server, profiles, rooms",
        ),
        # missing keys
        (
            f'token_sha256 = "{HASH_B}"\n',
            "",
            "rooms.giao-ban.sites.ha-giang.token_sha256",
            "missing; expected a string",
        ),
        ('listen = "127.0.0.1:8080"\n', "", "server.listen", "missing; expected a string"),
        ("fps = 30\n", "", "profiles.high.fps", "missing; expected an integer in 1..60"),
        ('name = "Giao ban trực tuyến toàn ngành"\n', "", "rooms.giao-ban.name", "missing"),
        ('profile = "low"\n', "", "rooms.giao-ban.profile", "missing; expected a string"),
        # wrong types
        (
            "fps = 15",
            "fps = true",
            "profiles.low.fps",
            "expected an integer in 1..60, got a boolean",
        ),
        (
            "width = 640",
            "width = 640.0",
            "profiles.low.width",
            "expected an even integer in 16..3840, got a float",
        ),
        (
            'listen = "127.0.0.1:8080"',
            "listen = 8080",
            "server.listen",
            "expected a string, got an integer",
        ),
        (
            'name = "Cục THADS tỉnh Hà Giang"',
            "name = 5",
            "rooms.giao-ban.sites.ha-giang.name",
            "expected a string, got an integer",
        ),
        (
            'chair = "tong-cuc"',
            "chair = ['tong-cuc']",
            "rooms.giao-ban.chair",
            "expected a string, got an array",
        ),
        # numbers out of range
        (
            "width = 640",
            "width = 641",
            "profiles.low.width",
            "expected an even integer in 16..3840, got 641",
        ),
        (
            "width = 1280",
            "width = 3842",
            "profiles.high.width",
            "expected an even integer in 16..3840, got 3842",
        ),
        ("width = 640", "width = 14", "profiles.low.width", "got 14"),
        (
            "height = 720",
            "height = 2162",
            "profiles.high.height",
            "expected an even integer in 16..2160, got 2162",
        ),
        ("height = 360", "height = 361", "profiles.low.height", "got 361"),
        ("fps = 15", "fps = 0", "profiles.low.fps", "expected an integer in 1..60, got 0"),
        ("fps = 30", "fps = 61", "profiles.high.fps", "expected an integer in 1..60, got 61"),
        ("video_kbps = 300", "video_kbps = 0", "profiles.low.video_kbps", "got 0"),
        ("audio_kbps = 24", "audio_kbps = -24", "profiles.low.audio_kbps", "got -24"),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nrtp_ports = [50000, 40000]',
            "server.rtp_ports",
            "MIN <= MAX, or [0, 0] for any port, got [50000, 40000]",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nrtp_ports = [40000, 65536]',
            "server.rtp_ports",
            "ports in 1..65535",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nrtp_ports = [0, 100]',
            "server.rtp_ports",
            "got [0, 100]",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nrtp_ports = [40000]',
            "server.rtp_ports",
            "expected [MIN, MAX]",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nrtp_ports = [true, 2]',
            "server.rtp_ports",
            "expected [MIN, MAX]",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmax_offer_bytes = 0',
            "server.max_offer_bytes",
            "got 0",
        ),
        # malformed listen address
        ('"127.0.0.1:8080"', '"127.0.0.1"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '"8080"', "server.listen", "got '8080'"),
        ('"127.0.0.1:8080"', '"127.0.0.1:-1"', "server.listen", "port in 0..65535"),
        ('"127.0.0.1:8080"', '"127.0.0.1:65536"', "server.listen", "got '127.0.0.1:65536'"),
        ('"127.0.0.1:8080"', '"127.0.0.1:http"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '"127.0.0.300:80"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '"::1:8080"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '"[127.0.0.1]:8080"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '":8080"', "server.listen", "expected HOST:PORT"),
        ('"127.0.0.1:8080"', '"my_host:8080"', "server.listen", "expected HOST:PORT"),
        # media addresses
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = ["10.0.0.300"]',
            "server.media_addresses[0]",
            "expected an IP address, got '10.0.0.300'",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = ["127.0.0.1", "mcu.example.vn"]',
            "server.media_addresses[1]",
            "expected an IP address, got 'mcu.example.vn'",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = ["0.0.0.0"]',
            "server.media_addresses[0]",
            "expected a concrete IP address",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = []',
            "server.media_addresses",
            "expected a non-empty array of IP addresses",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = "127.0.0.1"',
            "server.media_addresses",
            "expected a non-empty array of IP addresses",
        ),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nmedia_addresses = ["127.0.0.1", "127.0.0.1"]',
            "server.media_addresses[1]",
            "expected each address once",
        ),
        # ICE servers
        (
            'listen = "127.0.0.1:8080"\n',
            'listen = "127.0.0.1:8080"\n[[server.ice_servers]]\nurls = ["http://x"]\n',
            "server.ice_servers[0].urls",
            "URLs starting with stun:, stuns:, turn:, turns:",
        ),
        (
            'listen = "127.0.0.1:8080"\n',
            'listen = "127.0.0.1:8080"\n[[server.ice_servers]]\n'
            'urls = ["turn:x"]\nusername = "u"\n',
            "server.ice_servers[0].credential",
            "expected a username and a credential",
        ),
        (
            'listen = "127.0.0.1:8080"\n',
            'listen = "127.0.0.1:8080"\n[[server.ice_servers]]\nurl = ["stun:x"]\n',
            "server.ice_servers[0].url",
            "unknown key; expected one of: urls, username, credential",
        ),
        (
            'listen = "127.0.0.1:8080"\n',
            'listen = "127.0.0.1:8080"\n[[server.ice_servers]]\nusername = "u"\n',
            "server.ice_servers[0].urls",
            "missing",
        ),
        # ids
        (
            "[rooms.giao-ban]\n",
            "[rooms.Giao-Ban]\n",
            "rooms.Giao-Ban",
            "expected a room id of lowercase",
        ),
        (
            "[rooms.giao-ban.sites.ha-giang]",
            "[rooms.giao-ban.sites.ha_giang]",
            "rooms.giao-ban.sites.ha_giang",
            "expected a site id of lowercase ASCII letters",
        ),
        (
            "[rooms.giao-ban.sites.ha-giang]",
            "[rooms.giao-ban.sites.-ha-giang]",
            "rooms.giao-ban.sites.-ha-giang",
            "not starting with '-'",
        ),
        (
            "[rooms.giao-ban.sites.ha-giang]",
            f"[rooms.giao-ban.sites.{'a' * 64}]",
            f"rooms.giao-ban.sites.{'a' * 64}",
            "1 to 63 long",
        ),
        ("[profiles.low]", "[profiles.Low]", "profiles.Low", "expected a profile id"),
        # token hashes
        (
            f'token_sha256 = "{HASH_B}"',
            f'token_sha256 = "{HASH_B.upper()}"',
            "rooms.giao-ban.sites.ha-giang.token_sha256",
            "64 lowercase hex digits",
        ),
        (
            f'token_sha256 = "{HASH_B}"',
            f'token_sha256 = "{HASH_B[:-1]}"',
            "rooms.giao-ban.sites.ha-giang.token_sha256",
            "64 lowercase hex digits",
        ),
        (
            f'token_sha256 = "{HASH_B}"',
            f'token_sha256 = "{HASH_A}"',
            "rooms.giao-ban.sites.ha-giang.token_sha256",
            "expected a token hash no other site uses, rooms.giao-ban.sites.tong-cuc has the same",
        ),
        # profile references
        (
            'profile = "low"',
            'profile = "ultra"',
            "rooms.giao-ban.profile",
            "expected one of the profiles high, low, got 'ultra'",
        ),
        (
            'profile = "high"',
            'profile = "medium"',
            "rooms.giao-ban.sites.tong-cuc.profile",
            "expected one of the profiles high, low, got 'medium'",
        ),
        # chair
        (
            'chair = "tong-cuc"',
            'chair = "ha-noi"',
            "rooms.giao-ban.chair",
            "expected the id of one of the room's sites (tong-cuc, ha-giang), got 'ha-noi'",
        ),
        # names
        (
            'name = "Cục THADS tỉnh Hà Giang"',
            'name = ""',
            "rooms.giao-ban.sites.ha-giang.name",
            "expected a non-empty name",
        ),
        (
            'name = "Giao ban trực tuyến toàn ngành"',
            'name = "   "',
            "rooms.giao-ban.name",
            "expected a non-empty name",
        ),
        (
            'name = "Cục THADS tỉnh Hà Giang"',
            'name = "Hà\\nGiang"',
            "rooms.giao-ban.sites.ha-giang.name",
            "without control characters",
        ),
        (
            'name = "Cục THADS tỉnh Hà Giang"',
            'name = "Tổng cục Thi hành án dân sự"',
            "rooms.giao-ban.sites.ha-giang.name",
            "a name no other site of the room has",
        ),
        # layouts
        (
            'layout = "auto"',
            'layout = "6x6"',
            "rooms.giao-ban.layout",
            "expected a layout or layout group name (1+12, 1+5, 1+7, 1+9",
        ),
        ('layout = "auto"', 'layout = "../conf/mcu"', "rooms.giao-ban.layout", "got '../conf/mcu'"),
        (
            'listen = "127.0.0.1:8080"',
            'listen = "127.0.0.1:8080"\nlayouts = "no/such/dir"',
            "server.layouts",
            "expected a directory of layout files",
        ),
    ],
)
def test_invalid_value_names_file_key_and_expectation(
    old: str, new: str, key: str, expected: str
) -> None:
    message = error_of(edited(old, new))
    assert message.startswith(f"{FILE}: {key}: "), message
    assert expected in message


def test_room_without_sites() -> None:
    without_sites = BASE.split("[rooms.giao-ban.sites.tong-cuc]")[0].replace(
        'chair = "tong-cuc"\n', ""
    )
    message = error_of(without_sites)
    assert message.startswith(f"{FILE}: rooms.giao-ban.sites: missing; expected a table")
    message = error_of(without_sites + "[rooms.giao-ban.sites]\n")
    assert message == f"{FILE}: rooms.giao-ban.sites: expected at least one site"


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("[server]", "server", "missing; expected a table"),
        ("[profiles.low]", "profiles", "missing; expected a table"),
        ("[rooms.giao-ban]", "rooms", "missing; expected a table"),
    ],
)
def test_missing_sections(section: str, key: str, expected: str) -> None:
    # keep only the tables that do not start with the section's header
    tables = re.split(r"\n(?=\[)", BASE)
    head = section.split(".")[0]
    kept = [table for table in tables if not table.startswith(head)]
    assert len(kept) < len(tables)
    message = error_of("\n".join(kept))
    assert message.startswith(f"{FILE}: {key}: {expected}"), message


def test_empty_profiles_table() -> None:
    message = error_of('[server]\nlisten = "127.0.0.1:8080"\n[profiles]\n[rooms.x]\n')
    assert message == f"{FILE}: profiles: expected at least one profile"


def test_section_of_the_wrong_type() -> None:
    message = error_of('server = "127.0.0.1:8080"\n' + BASE.split("\n", 2)[2])
    assert message == f"{FILE}: server: expected a table, got a string"


def test_duplicate_token_across_rooms() -> None:
    other_room = (
        '\n[rooms.ha-giang]\nname = "Họp tỉnh"\nprofile = "low"\n'
        f'[rooms.ha-giang.sites.cuc-ha-giang]\nname = "Cục"\ntoken_sha256 = "{HASH_B}"\n'
    )
    message = error_of(BASE + other_room)
    assert message == (
        f"{FILE}: rooms.ha-giang.sites.cuc-ha-giang.token_sha256: expected a token hash no "
        "other site uses, rooms.giao-ban.sites.ha-giang has the same"
    )


def test_toml_syntax_error_names_line_and_column() -> None:
    text = edited("fps = 30", "fps = = 30")
    line = text.splitlines().index("fps = = 30") + 1
    message = error_of(text)
    assert message.startswith(f"{FILE}: line {line}, column 7: expected valid TOML: ")


def test_toml_error_at_end_of_file() -> None:
    message = error_of(BASE + "broken = ")
    assert message.startswith(f"{FILE}: end of file: expected valid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: (file): expected a readable file")


def test_unreadable_file(tmp_path: Path) -> None:
    # a directory cannot be read as a file, even by root
    with pytest.raises(ConfigError, match=r"\(file\): expected a readable file"):
        load_config(tmp_path)


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.encode("utf-8").replace("Hà".encode(), "Hà".encode("latin-1")))
    with pytest.raises(ConfigError, match=r"latin1\.toml: \(file\): expected UTF-8 text"):
        load_config(path)


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "mcu.toml"
    path.write_text(edited("fps = 15", "fps = 99"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.file, error.key) == (str(path), "profiles.low.fps")
    assert error.expected == "expected an integer in 1..60, got 99"


def test_self_view_defaults_to_true_and_must_be_a_boolean(tmp_path: Path) -> None:
    text = (REPO / "conf" / "demo.toml").read_text(encoding="utf-8")
    assert parse_config(text, REPO / "conf" / "demo.toml").rooms["demo"].self_view is True
    off = text.replace('chair = "tong-cuc"', 'chair = "tong-cuc"\nself_view = false', 1)
    assert parse_config(off, REPO / "conf" / "demo.toml").rooms["demo"].self_view is False
    bad = text.replace('chair = "tong-cuc"', 'chair = "tong-cuc"\nself_view = "no"', 1)
    with pytest.raises(ConfigError, match=r"rooms\.demo\.self_view: expected true or false"):
        parse_config(bad, REPO / "conf" / "demo.toml")
