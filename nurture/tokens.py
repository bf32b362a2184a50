"""Signed tokens for unsubscribe links: unguessable, unforgeable, and free of personal data.

A token carries only the lead's numeric id and the sequence, HMAC-SHA256-signed with the
workspace secret key; the web endpoint verifies it before acting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class BadToken(ValueError):
    """The token was tampered with, truncated, or signed with another key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()


def sign(secret: str, purpose: str, *fields: str | int) -> str:
    """A URL-safe token binding `fields` to `purpose` (e.g. "unsubscribe")."""
    payload = "\x1f".join(str(f) for f in fields).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: str, purpose: str, token: str) -> list[str]:
    """The fields of a valid token, or BadToken."""
    try:
        body, mac = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None
    # The decoder skips stray characters and ignores the unused low bits of the last one, so
    # many strings decode alike; accept only the one encoding sign() makes.
    if _b64(payload) != body or _b64(given) != mac:
        raise BadToken("malformed token")
    if not hmac.compare_digest(given, _mac(secret, purpose, payload)):
        raise BadToken("bad signature")
    return payload.decode().split("\x1f")
