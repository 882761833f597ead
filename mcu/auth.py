"""Site tokens: making them, storing only their SHA-256, and checking what a site presents.

The configuration never holds a token, only its hex digest, so a leaked config file does not let
anyone dial in. Tokens themselves are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

logger = logging.getLogger(__name__)

# 32 random bytes, i.e. 256 bits of entropy, encoded as 43 URL-safe base64 characters
TOKEN_BYTES = 32


def new_token() -> tuple[str, str]:
    """A fresh URL-safe token and the SHA-256 hex digest to put in the config."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 of the UTF-8 bytes of `token`, as 64 lowercase hex digits."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str | None, sha256_hex: str) -> bool:
    """Whether `token` hashes to `sha256_hex`, compared in constant time; no token never matches."""
    if not token:
        return False

    # compare the digests as bytes: compare_digest refuses non-ASCII str, and a wrong-length
    # stored value simply does not match
    presented = hash_token(token).encode("ascii")
    stored = sha256_hex.encode("utf-8", errors="replace")
    return hmac.compare_digest(presented, stored)


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None for anything else."""
    if authorization_header is None:
        return None
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]
