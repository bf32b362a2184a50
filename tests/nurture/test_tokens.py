"""Unsubscribe tokens: they round-trip, cannot be forged or repurposed, and carry no personal data."""

from __future__ import annotations

import base64

import pytest

from leadflow.nurture import tokens
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.tokens import BadToken

KEY = "workspace-secret-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip() -> None:
    token = tokens.sign(KEY, "unsubscribe", 42, "warm-up")
    assert tokens.verify(KEY, "unsubscribe", token) == ["42", "warm-up"]


def test_token_is_url_safe_and_stable() -> None:
    token = tokens.sign(KEY, "unsubscribe", 42, "warm-up")
    assert token == tokens.sign(KEY, "unsubscribe", 42, "warm-up")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token != tokens.sign(KEY, "unsubscribe", 43, "warm-up")


def test_tampered_payload_is_refused() -> None:
    body, mac = tokens.sign(KEY, "unsubscribe", 42, "warm-up").split(".")
    # Someone swaps in another lead's id but keeps the signature.
    other_lead = _b64(b"43\x1fwarm-up")
    with pytest.raises(BadToken):
        tokens.verify(KEY, "unsubscribe", f"{other_lead}.{mac}")
    # Or flips one character in the middle of the payload.
    middle = len(body) // 2
    flipped = body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]
    with pytest.raises(BadToken):
        tokens.verify(KEY, "unsubscribe", f"{flipped}.{mac}")


def test_tampered_signature_is_refused() -> None:
    body, mac = tokens.sign(KEY, "unsubscribe", 42, "warm-up").split(".")
    flipped = mac[:5] + ("A" if mac[5] != "A" else "B") + mac[6:]
    for bad_mac in (flipped, mac[:-4], mac + "AAAA", _b64(b"\x00" * 32), ""):
        with pytest.raises(BadToken):
            tokens.verify(KEY, "unsubscribe", f"{body}.{bad_mac}")


def test_only_the_exact_token_verifies() -> None:
    # base64 decoding is lenient (skips stray characters, ignores the unused bits of the last
    # character); a token that was altered must not verify just because it decodes alike.
    token = tokens.sign(KEY, "unsubscribe", 42, "warm-up")
    body, mac = token.split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variants = [
        f"{body[:3]}!!!!{body[3:]}.{mac}",
        f"{body}.{mac[:10]}$$$${mac[10:]}",
        f"{body}==.{mac}",
        *(f"{body}.{mac[:-1]}{c}" for c in last if c != mac[-1]),
        *(f"{body[:-1]}{c}.{mac}" for c in last if c != body[-1]),
    ]
    for variant in variants:
        with pytest.raises(BadToken):
            tokens.verify(KEY, "unsubscribe", variant)
    assert tokens.verify(KEY, "unsubscribe", token) == ["42", "warm-up"]


def test_token_signed_with_another_key_is_refused() -> None:
    forged = tokens.sign("some-other-workspace-key", "unsubscribe", 42, "warm-up")
    with pytest.raises(BadToken):
        tokens.verify(KEY, "unsubscribe", forged)


def test_token_for_another_purpose_is_refused() -> None:
    click = tokens.sign(KEY, "click", 42, "warm-up")
    with pytest.raises(BadToken):
        tokens.verify(KEY, "unsubscribe", click)


@pytest.mark.parametrize(
    "malformed",
    ["", ".", "no-dot-at-all", "a.b.c", "!!!.???", "é.ü", "x" * 5 + ".", ".abc", "%2e%2e.%2f"],
)
def test_malformed_tokens_are_refused(malformed: str) -> None:
    with pytest.raises(BadToken):
        tokens.verify(KEY, "unsubscribe", malformed)


def test_bad_token_is_a_value_error() -> None:
    # Web handlers that map ValueError to 400 keep working.
    assert issubclass(BadToken, ValueError)


def test_token_and_link_carry_no_email_address() -> None:
    address = "anna.jansen@example.com"
    links = LinkSigner(secret_key=KEY, public_base_url="https://mail.acme.example")
    url = links.unsubscribe_url(42, "warm-up")
    token = url.rsplit("/", 1)[1]
    assert tokens.verify(KEY, "unsubscribe", token) == ["42", "warm-up"]
    decoded = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    for text in (url, token, decoded.decode()):
        assert address not in text and "anna" not in text.lower() and "@" not in text
