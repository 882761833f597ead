"""Offer checks: structure, media sections and codecs, with the reason a site is told."""

from __future__ import annotations

import pytest

from mcu.exceptions import OfferError
from mcu.sdp import check_offer, first_codec, parse_sections, ssrcs

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def video(*lines: str, formats: str = "96") -> str:
    return HEAD + f"m=video 9 UDP/TLS/RTP/SAVPF {formats}\r\n" + "".join(
        line + "\r\n" for line in lines
    )


def test_vp8_and_usable_h264_pass() -> None:
    check_offer(video("a=rtpmap:96 VP8/90000"))
    check_offer(video("a=rtpmap:102 H264/90000",
                      "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;"
                      "profile-level-id=42e01f", formats="102"))


@pytest.mark.parametrize(
    ("fmtp", "why"),
    [
        ("packetization-mode=0;profile-level-id=42e01f", "mode 0"),
        ("packetization-mode=1;profile-level-id=4d001f", "Main profile"),
        ("", "no parameters"),
    ],
)
def test_h264_aiortc_cannot_use_is_refused(fmtp: str, why: str) -> None:
    with pytest.raises(OfferError, match=r"offered: H264\); accepted: VP8, H264"):
        check_offer(video("a=rtpmap:102 H264/90000", f"a=fmtp:102 {fmtp}", formats="102"))


def test_refusal_names_offered_codecs() -> None:
    offer = video("a=rtpmap:98 VP9/90000", "a=rtpmap:45 AV1/90000", formats="98 45")
    with pytest.raises(OfferError) as caught:
        check_offer(offer)
    assert str(caught.value) == (
        "offer has no supported video codec (offered: AV1, VP9); accepted: VP8, H264 "
        "(packetization-mode=1, profile-level-id 42001f or 42e01f)"
    )


def test_static_audio_payload_types_need_no_rtpmap() -> None:
    check_offer(HEAD + "m=audio 9 RTP/AVP 0 8\r\n")
    with pytest.raises(OfferError, match="no supported audio codec"):
        check_offer(HEAD + "m=audio 9 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must start with 'v=0'"),
        ("hello\r\n", "must start with 'v=0'"),
        (HEAD, "no audio or video media section"),
        (HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
         "no audio or video media section"),
        (HEAD + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
         "no audio or video media section"),
        (HEAD + "garbage line\r\n", "malformed SDP line 5"),
        (HEAD + "m=video x\r\n", "malformed media line 5"),
    ],
)
def test_malformed_offers(text: str, reason: str) -> None:
    with pytest.raises(OfferError, match=reason.replace("(", r"\(")):
        check_offer(text)


def test_sections_are_parsed_per_media() -> None:
    offer = HEAD + "m=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n" + video(
        "a=rtpmap:96 VP8/90000").removeprefix(HEAD)
    sections = parse_sections(offer)
    assert [(s.kind, s.codecs) for s in sections] == [
        ("audio", {"111": "opus"}),
        ("video", {"96": "VP8"}),
    ]


def test_first_codec_follows_the_media_line_order() -> None:
    answer = video("a=rtpmap:96 VP8/90000", "a=rtpmap:102 H264/90000", formats="102 96")
    assert first_codec(answer, "video") == "h264"
    assert first_codec(answer, "audio") is None


def test_ssrcs_are_read_per_media_kind() -> None:
    offer = (HEAD + "m=audio 9 RTP/AVP 111\r\na=ssrc:11 cname:x\r\n"
             + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ssrc-group:FID 22 23\r\n"
             + "a=ssrc:22 cname:x\r\na=ssrc:22 msid:a b\r\na=ssrc:23 cname:x\r\n")
    assert ssrcs(offer, "video") == [22, 23]
    assert ssrcs(offer, "audio") == [11]
