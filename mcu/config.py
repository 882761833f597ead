"""The MCU's configuration: a TOML file read once into frozen dataclasses.

Every check happens here, at load time, so the rest of the server can trust what it is given. Each
error names the file, the dotted key (`rooms.giao-ban.sites.ha-giang.token_sha256`) and what was
expected there.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mcu.exceptions import ConfigError, McuError

logger = logging.getLogger(__name__)

# the default layout: a group (layouts/groups/auto.toml) that picks a layout by sites present
AUTO_LAYOUT = "auto"

DEFAULT_LAYOUTS_DIR = Path(__file__).resolve().parents[1] / "layouts"
DEFAULT_MEDIA_ADDRESSES: tuple[str, ...] = ("127.0.0.1",)
DEFAULT_RTP_PORTS = (40000, 49999)
DEFAULT_MAX_OFFER_BYTES = 65536
MAX_OFFER_BYTES_LIMIT = 1 << 20

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
ID_EXPECTED = "lowercase ASCII letters, digits and '-', not starting with '-', 1 to 63 long"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
# the keys each table may hold, in the order error messages list them
_SERVER_KEYS = (
    "listen",
    "media_addresses",
    "rtp_ports",
    "max_offer_bytes",
    "layouts",
    "ice_servers",
    "operator_token_file",
    "public_url",
    "tls_cert",
    "tls_key",
)
_PROFILE_KEYS = ("width", "height", "fps", "video_kbps", "audio_kbps")
_ROOM_KEYS = ("name", "layout", "profile", "chair", "self_view", "sites")
_SITE_KEYS = ("name", "token_sha256", "profile")
_ICE_KEYS = ("urls", "username", "credential")
_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


@dataclass(frozen=True)
class Profile:
    """A bandwidth profile of a site's downstream: canvas size, frame rate and bitrates."""

    name: str
    width: int
    height: int
    fps: int
    video_kbps: int
    audio_kbps: int


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server handed to peer connections."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Where the MCU listens for signaling and which addresses and ports carry media."""

    host: str
    port: int
    media_addresses: tuple[str, ...]
    rtp_port_min: int
    rtp_port_max: int
    ice_servers: tuple[IceServer, ...]
    max_offer_bytes: int
    layouts_dir: Path
    # a file holding the operator's token (else the environment's MCU_OPERATOR_TOKEN)
    operator_token_file: Path | None = None
    # the address sites use in join links, e.g. "https://mcu.example.vn:8443" (else the request's)
    public_url: str | None = None
    # HTTPS for signaling, the pages and the API: PEM certificate chain and key
    tls_cert: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True)
class SiteConfig:
    """One site allowed to dial a room; only the hash of its token is kept."""

    id: str
    name: str
    token_sha256: str
    profile: str | None


@dataclass(frozen=True)
class RoomConfig:
    """A conference room and the sites that may join it, in config order."""

    id: str
    name: str
    layout: str
    profile: str
    chair: str | None
    sites: tuple[SiteConfig, ...]
    # False: the active speaker sees the previous speaker in its place instead of itself
    self_view: bool = True

    def site(self, site_id: str) -> SiteConfig | None:
        """The site with this id, or None when it is not one of the room's."""
        return next((site for site in self.sites if site.id == site_id), None)

    def profile_of(self, site_id: str) -> str:
        """The profile the site receives: its own when set, else the room's; KeyError if unknown."""
        site = self.site(site_id)
        if site is None:
            raise KeyError(site_id)
        return site.profile or self.profile


@dataclass(frozen=True)
class Config:
    """The whole configuration; read-only once loaded."""

    path: Path
    server: ServerConfig
    profiles: Mapping[str, Profile]
    rooms: Mapping[str, RoomConfig]


# --- reading TOML (shared with layout.py) ---

ErrorFactory = Callable[[str, str], McuError]


def read_text(path: Path, fail: ErrorFactory) -> str:
    """The UTF-8 text of `path` (a leading BOM is dropped); `fail(where, what)` builds the error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail("(file)", f"expected a readable file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail("(file)", f"expected UTF-8 text, byte {exc.start} is not") from None


def loads_toml(text: str, fail: ErrorFactory) -> dict[str, Any]:
    """Parse TOML; a syntax error is reported at its line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _TOML_AT.search(message)
        if at is None:
            raise fail("(toml)", f"expected valid TOML: {message}") from None
        where = f"line {at[1]}, column {at[2]}" if at[1] else "end of file"
        raise fail(where, f"expected valid TOML: {message[: at.start()]}") from None


def kind_of(value: object) -> str:
    """How a TOML value's type reads in an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


class _Table:
    """A TOML table being read, with the file and dotted key that errors must name."""

    def __init__(self, file: str, key: str, value: object, keys: Sequence[str] | None) -> None:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {kind_of(value)}")
        self.file = file
        self.key = key
        self.data: dict[str, Any] = value
        if keys is not None:
            for name in value:
                if name not in keys:
                    raise self.error(name, f"unknown key; expected one of: {', '.join(keys)}")

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.file, self.path(name), expected)

    def get(self, name: str, expected: str) -> Any:
        if name not in self.data:
            raise self.error(name, f"missing; expected {expected}")
        return self.data[name]

    def integer(self, name: str, low: int, high: int, *, even: bool = False) -> int:
        expected = f"{'an even' if even else 'an'} integer in {low}..{high}"
        value = self.get(name, expected)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"expected {expected}, got {kind_of(value)}")
        if not low <= value <= high or (even and value % 2):
            raise self.error(name, f"expected {expected}, got {value}")
        return value

    def string(self, name: str) -> str:
        value = self.get(name, "a string")
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {kind_of(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {kind_of(value)}")
        return value

    def optional_string(self, name: str) -> str | None:
        return self.string(name) if name in self.data else None

    def display_name(self, name: str) -> str:
        """A human-readable name: NFC-normalised, trimmed, not empty, no control characters."""
        text = unicodedata.normalize("NFC", self.string(name)).strip()
        if not text:
            raise self.error(name, "expected a non-empty name")
        if any(unicodedata.category(ch) == "Cc" for ch in text):
            raise self.error(name, "expected a name without control characters")
        return text

    def table(self, name: str, keys: Sequence[str] | None) -> _Table:
        return _Table(self.file, self.path(name), self.get(name, "a table"), keys)

    def entries(self, name: str, what: str, keys: Sequence[str]) -> list[tuple[str, _Table]]:
        """The sub-tables of a table keyed by id (profiles, rooms, sites), in file order."""
        parent = self.table(name, None)
        if not parent.data:
            raise self.error(name, f"expected at least one {what}")
        for entry_id in parent.data:
            if not ID_PATTERN.fullmatch(entry_id):
                raise parent.error(entry_id, f"expected a {what} id of {ID_EXPECTED}")
        return [(entry_id, parent.table(entry_id, keys)) for entry_id in parent.data]


# --- the sections ---


def load_config(path: str | Path) -> Config:
    """Read and check the configuration file at `path`."""
    text = read_text(Path(path), lambda key, expected: ConfigError(path, key, expected))
    return parse_config(text, path)


def parse_config(text: str, path: str | Path = "<string>") -> Config:
    """Check TOML text; `path` names it in errors and anchors a relative layouts directory."""
    file = str(path)
    data = loads_toml(text, lambda key, expected: ConfigError(file, key, expected))
    root = _Table(file, "", data, ("server", "profiles", "rooms"))

    server = _server(root.table("server", _SERVER_KEYS), Path(path))
    profiles = {
        name: _profile(name, table)
        for name, table in root.entries("profiles", "profile", _PROFILE_KEYS)
    }
    layouts = _layout_names(root, server.layouts_dir)

    rooms: dict[str, RoomConfig] = {}
    token_owner: dict[str, str] = {}
    for room_id, table in root.entries("rooms", "room", _ROOM_KEYS):
        rooms[room_id] = _room(room_id, table, profiles, layouts, token_owner)

    logger.debug("config loaded: file=%s rooms=%d sites=%d", file, len(rooms), len(token_owner))
    return Config(
        path=Path(path),
        server=server,
        profiles=MappingProxyType(profiles),
        rooms=MappingProxyType(rooms),
    )


def _server(table: _Table, config_path: Path) -> ServerConfig:
    host, port = _listen(table)

    media_addresses = DEFAULT_MEDIA_ADDRESSES
    if "media_addresses" in table.data:
        media_addresses = _media_addresses(table)

    rtp_min, rtp_max = DEFAULT_RTP_PORTS
    if "rtp_ports" in table.data:
        rtp_min, rtp_max = _rtp_ports(table)

    max_offer_bytes = DEFAULT_MAX_OFFER_BYTES
    if "max_offer_bytes" in table.data:
        max_offer_bytes = table.integer("max_offer_bytes", 1, MAX_OFFER_BYTES_LIMIT)

    # a relative layouts directory is relative to the file that names it
    layouts_dir = DEFAULT_LAYOUTS_DIR
    if "layouts" in table.data:
        layouts_dir = (config_path.parent / table.string("layouts")).resolve()

    ice_servers: tuple[IceServer, ...] = ()
    if "ice_servers" in table.data:
        ice_servers = _ice_servers(table)

    operator_token_file = None
    if "operator_token_file" in table.data:
        operator_token_file = (config_path.parent / table.string("operator_token_file")).resolve()

    public_url = table.optional_string("public_url")
    if public_url is not None and not re.fullmatch(r"https?://[^/\s]+", public_url):
        raise table.error("public_url", f"expected http(s)://HOST[:PORT], got {public_url!r}")

    tls_cert = tls_key = None
    if ("tls_cert" in table.data) != ("tls_key" in table.data):
        missing = "tls_key" if "tls_cert" in table.data else "tls_cert"
        raise table.error(missing, "missing; tls_cert and tls_key go together")
    if "tls_cert" in table.data:
        tls_cert = (config_path.parent / table.string("tls_cert")).resolve()
        tls_key = (config_path.parent / table.string("tls_key")).resolve()
        for key, path in (("tls_cert", tls_cert), ("tls_key", tls_key)):
            if not path.is_file():
                raise table.error(key, f"expected a readable PEM file, {path} is not one")

    return ServerConfig(
        host=host,
        port=port,
        media_addresses=media_addresses,
        rtp_port_min=rtp_min,
        rtp_port_max=rtp_max,
        ice_servers=ice_servers,
        max_offer_bytes=max_offer_bytes,
        layouts_dir=layouts_dir,
        operator_token_file=operator_token_file,
        public_url=public_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def _listen(table: _Table) -> tuple[str, int]:
    listen = table.string("listen")
    expected = (
        "HOST:PORT with an IP address or host name and a port in 0..65535 (0: any free port) "
        "(e.g. 0.0.0.0:8080 or [::]:8080)"
    )
    host, colon, port_text = listen.rpartition(":")
    if not colon or not port_text.isascii() or not port_text.isdigit():
        raise table.error("listen", f"expected {expected}, got {listen!r}")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip(host) and ":" in host
    else:
        # an IPv6 address needs brackets to keep its colons apart from the port's
        valid_host = (_is_ip(host) and ":" not in host) or _is_host_name(host)
    if not valid_host or not 0 <= port <= 65535:
        raise table.error("listen", f"expected {expected}, got {listen!r}")
    return host, port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host_name(text: str) -> bool:
    # a name whose last label is all digits would be a mistyped IPv4 address
    labels = text.split(".")
    return (
        0 < len(text) <= 253
        and not labels[-1].isdigit()
        and all(
            re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels
        )
    )


def _media_addresses(table: _Table) -> tuple[str, ...]:
    value = table.data["media_addresses"]
    expected = "a non-empty array of IP addresses the MCU's media is reachable on"
    if not isinstance(value, list) or not value:
        raise table.error("media_addresses", f"expected {expected}")
    addresses: list[str] = []
    for index, item in enumerate(value):
        key = f"media_addresses[{index}]"
        if not isinstance(item, str) or not _is_ip(item):
            shown = repr(item) if isinstance(item, str) else kind_of(item)
            raise table.error(key, f"expected an IP address, got {shown}")
        address = ipaddress.ip_address(item)
        if address.is_unspecified:
            raise table.error(
                key,
                f"expected a concrete IP address, got {item!r}: a host "
                "candidate must be an address a site can send to",
            )
        if str(address) in addresses:
            raise table.error(key, f"expected each address once, got {item!r} twice")
        addresses.append(str(address))
    return tuple(addresses)


def _rtp_ports(table: _Table) -> tuple[int, int]:
    value = table.data["rtp_ports"]
    expected = "[MIN, MAX] with ports in 1..65535 and MIN <= MAX, or [0, 0] for any port"
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(port, int) and not isinstance(port, bool) for port in value)
    ):
        raise table.error("rtp_ports", f"expected {expected}")
    low, high = value
    if (low, high) != (0, 0) and not 1 <= low <= high <= 65535:
        raise table.error("rtp_ports", f"expected {expected}, got [{low}, {high}]")
    return low, high


def _ice_servers(table: _Table) -> tuple[IceServer, ...]:
    value = table.data["ice_servers"]
    if not isinstance(value, list):
        raise table.error("ice_servers", f"expected an array of tables, got {kind_of(value)}")
    servers = []
    for index, raw in enumerate(value):
        entry = _Table(table.file, table.path(f"ice_servers[{index}]"), raw, _ICE_KEYS)
        urls = entry.get("urls", "an array of stun:/turn: URLs")
        if isinstance(urls, str):
            urls = [urls]
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(url, str) and url.startswith(_ICE_SCHEMES) for url in urls)
        ):
            raise entry.error(
                "urls",
                "expected a non-empty array of URLs starting with " + ", ".join(_ICE_SCHEMES),
            )
        username = entry.optional_string("username")
        credential = entry.optional_string("credential")
        if any(url.startswith("turn") for url in urls) and (not username or not credential):
            missing = "username" if not username else "credential"
            raise entry.error(missing, "expected a username and a credential for a TURN server")
        servers.append(IceServer(tuple(urls), username, credential))
    return tuple(servers)


def _profile(name: str, table: _Table) -> Profile:
    return Profile(
        name=name,
        width=table.integer("width", 16, 3840, even=True),
        height=table.integer("height", 16, 2160, even=True),
        fps=table.integer("fps", 1, 60),
        video_kbps=table.integer("video_kbps", 1, 1_000_000),
        # Opus encodes 6 to 510 kbit/s
        audio_kbps=table.integer("audio_kbps", 6, 510),
    )


def _layout_names(root: _Table, directory: Path) -> frozenset[str]:
    """The names a room may use: the `*.toml` layouts of the directory and its `groups/`."""
    if not directory.is_dir():
        raise ConfigError(
            root.file,
            "server.layouts",
            f"expected a directory of layout files, {directory} is not one",
        )
    layouts = {path.stem for path in directory.glob("*.toml")}
    groups = {path.stem for path in (directory / "groups").glob("*.toml")}
    return frozenset(layouts | groups)


def _profile_name(table: _Table, key: str, profiles: Mapping[str, Profile]) -> str:
    name = table.string(key)
    if name not in profiles:
        raise table.error(
            key, f"expected one of the profiles {_listing(sorted(profiles))}, got {name!r}"
        )
    return name


def _room(
    room_id: str,
    table: _Table,
    profiles: Mapping[str, Profile],
    layouts: frozenset[str],
    token_owner: dict[str, str],
) -> RoomConfig:
    name = table.display_name("name")
    profile = _profile_name(table, "profile", profiles)

    layout = AUTO_LAYOUT
    if "layout" in table.data:
        layout = table.string("layout")
        if layout not in layouts:
            raise table.error(
                "layout",
                f"expected a layout or layout group name "
                f"({_listing(sorted(layouts))}), got {layout!r}",
            )

    sites: list[SiteConfig] = []
    names: dict[str, str] = {}
    for site_id, site_table in table.entries("sites", "site", _SITE_KEYS):
        site = _site(site_id, site_table, profiles)
        if site.name in names:
            raise site_table.error(
                "name",
                f"expected a name no other site of the room has, "
                f"{names[site.name]} is also {site.name!r}",
            )
        names[site.name] = site_table.key

        # two sites sharing a token could each dial in as the other
        other = token_owner.get(site.token_sha256)
        if other is not None:
            raise site_table.error(
                "token_sha256", f"expected a token hash no other site uses, {other} has the same"
            )
        token_owner[site.token_sha256] = site_table.key
        sites.append(site)

    chair = table.optional_string("chair")
    if chair is not None and all(site.id != chair for site in sites):
        raise table.error(
            "chair",
            f"expected the id of one of the room's sites "
            f"({_listing([site.id for site in sites])}), got {chair!r}",
        )

    self_view = table.boolean("self_view", True)
    return RoomConfig(room_id, name, layout, profile, chair, tuple(sites), self_view)


def _site(site_id: str, table: _Table, profiles: Mapping[str, Profile]) -> SiteConfig:
    name = table.display_name("name")
    token_sha256 = table.string("token_sha256")
    if not _SHA256_HEX.fullmatch(token_sha256):
        raise table.error(
            "token_sha256",
            "expected the SHA-256 of the site's token as 64 "
            "lowercase hex digits (`mcu token` prints one)",
        )
    profile = _profile_name(table, "profile", profiles) if "profile" in table.data else None
    return SiteConfig(site_id, name, token_sha256, profile)
