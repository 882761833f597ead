"""Checks on an SDP offer before aiortc sees it, so a site learns in one line what is wrong.

Only the parts the MCU depends on are checked (RFC 8866 structure, media sections, codecs); the full
parse is aiortc's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .exceptions import OfferError

VIDEO_ACCEPTED = "VP8, H264 (packetization-mode=1, profile-level-id 42001f or 42e01f)"
AUDIO_ACCEPTED = "opus, PCMU, PCMA"
_H264_PROFILES = {"42001f", "42e01f"}
_STATIC = {"0": "PCMU", "8": "PCMA"}
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$", re.IGNORECASE)


@dataclass
class MediaSection:
    kind: str
    port: int
    codecs: dict[str, str] = field(default_factory=dict)  # payload type → codec name
    fmtp: dict[str, str] = field(default_factory=dict)  # payload type → format parameters
    formats: list[str] = field(default_factory=list)  # payload types in preference order


def parse_sections(text: str) -> list[MediaSection]:
    """The media sections of an offer, with their codecs; raises OfferError on bad structure."""
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise OfferError("offer is not SDP: it must start with 'v=0'")
    sections: list[MediaSection] = []
    for number, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise OfferError(f"malformed SDP line {number}: expected '<letter>=<value>'")
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise OfferError(f"malformed media line {number}: {line[:60]!r}")
            section = MediaSection(parts[0].lower(), int(parts[1].split("/")[0]),
                                   formats=parts[3:])
            # static payload types need no rtpmap line (RFC 3551 section 6)
            for pt in parts[3:]:
                if pt in _STATIC:
                    section.codecs[pt] = _STATIC[pt]
            sections.append(section)
        elif sections and (match := _RTPMAP.match(line)):
            sections[-1].codecs[match.group(1)] = match.group(2)
        elif sections and (match := _FMTP.match(line)):
            sections[-1].fmtp[match.group(1)] = match.group(2)
    return sections


def ssrcs(text: str, kind: str) -> list[int]:
    """The SSRCs an SDP announces for its `kind` sections (a=ssrc, RFC 5576)."""
    found: list[int] = []
    section = None
    for line in text.splitlines():
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        elif section == kind and line.startswith("a=ssrc:"):
            value = line[7:].split(" ", 1)[0]
            if value.isdigit() and int(value) not in found:
                found.append(int(value))
    return found


def first_codec(text: str, kind: str) -> str | None:
    """The lower-case name of the first codec of the first `kind` section (an answer's choice)."""
    for section in parse_sections(text):
        if section.kind == kind and section.port != 0:
            known = [section.codecs[pt] for pt in section.formats if pt in section.codecs]
            return known[0].lower() if known else None
    return None


def _h264_usable(fmtp: str) -> bool:
    params = dict(
        item.strip().split("=", 1) for item in fmtp.split(";") if "=" in item
    )
    return (
        params.get("packetization-mode") == "1"
        and params.get("profile-level-id", "").lower() in _H264_PROFILES
    )


def check_offer(text: str) -> None:
    """Raise OfferError with a one-line reason unless the offer has media the MCU can use."""
    sections = [s for s in parse_sections(text) if s.kind in ("audio", "video") and s.port != 0]
    if not sections:
        raise OfferError("offer has no audio or video media section")
    for section in sections:
        names = {pt: name.lower() for pt, name in section.codecs.items()}
        if section.kind == "video":
            usable = [
                pt for pt, name in names.items()
                if name == "vp8" or (name == "h264" and _h264_usable(section.fmtp.get(pt, "")))
            ]
            accepted = VIDEO_ACCEPTED
        else:
            usable = [pt for pt, name in names.items() if name in ("opus", "pcmu", "pcma")]
            accepted = AUDIO_ACCEPTED
        if not usable:
            offered = ", ".join(sorted({n for n in section.codecs.values()})) or "none"
            raise OfferError(
                f"offer has no supported {section.kind} codec (offered: {offered}); "
                f"accepted: {accepted}"
            )
