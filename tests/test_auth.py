"""Site tokens: generation, hashing, constant-time matching and Bearer header parsing."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest

from mcu.auth import bearer_token, hash_token, new_token, token_matches


def test_new_token_is_url_safe_with_256_bits_and_its_hash() -> None:
    token, digest = new_token()

    # URL-safe base64 without padding: decodes to at least 32 random bytes
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) >= 32
    assert digest == hashlib.sha256(token.encode("utf-8")).hexdigest()


def test_new_tokens_differ() -> None:
    tokens = {new_token()[0] for _ in range(50)}
    assert len(tokens) == 50


def test_hash_token_is_sha256_of_utf8() -> None:
    assert hash_token("demo-ha-giang") == hashlib.sha256(b"demo-ha-giang").hexdigest()
    # non-ASCII tokens hash their UTF-8 bytes
    assert hash_token("Đồng Văn") == hashlib.sha256("Đồng Văn".encode()).hexdigest()
    assert hash_token("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_token_round_trip() -> None:
    token, digest = new_token()
    assert token_matches(token, digest)


def test_token_mismatch() -> None:
    token, digest = new_token()
    other, _ = new_token()
    assert not token_matches(other, digest)
    assert not token_matches(token[:-1], digest)
    assert not token_matches(token + "x", digest)
    # the stored value is a hash: presenting the hash itself must not work
    assert not token_matches(digest, digest)


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_never_matches(token: str | None) -> None:
    empty_hash = hashlib.sha256(b"").hexdigest()
    assert not token_matches(token, empty_hash)


@pytest.mark.parametrize("stored", ["", "abc", "ZZ" * 32, "đ" * 64])
def test_malformed_stored_hash_does_not_match(stored: str) -> None:
    assert not token_matches("demo-ha-giang", stored)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.DEF-123_", "abc.DEF-123_"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer\tabc", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
        ("Bearerabc", None),
        ("Bearer abc def", None),
        ("Token abc", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_tokens_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token, digest = new_token()
    token_matches(token, digest)
    bearer_token(f"Bearer {token}")
    assert token not in caplog.text
