"""Handoff sinks: where sales-qualified leads are delivered (a file inbox or a signed webhook).

Every delivery carries an idempotency key so a retry after a crash or timeout lands on the same
file / the same `webhook-id`, letting the receiver deduplicate. Failures are classified so the
caller can decide without inspecting HTTP: retry later, give up on this handoff, or disable the
destination altogether (410 Gone).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import unquote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from leadflow.connectors.errors import DestinationGoneError, FatalHandoffError, RetriableHandoffError
from leadflow.connectors.handoff_payload import HandoffPayload
from leadflow.connectors.keyed_files import atomic_write, file_stem
from leadflow.connectors.status import Reading, parse_retry_after, read_status

__all__ = ["FileInbox", "HandoffSink", "WebhookSink", "sink_from_url"]

log = logging.getLogger(__name__)

MISSING_SECRET_MESSAGE = "LEADFLOW_WEBHOOK_SECRET is required for webhook destinations"


class HandoffSink(Protocol):
    """One destination for SQLs; `deliver` must be safe to repeat with the same key."""

    name: str

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str: ...


# --- file inbox ------------------------------------------------------------------------------


def _require_key(idempotency_key: str) -> None:
    if not idempotency_key or not idempotency_key.strip():
        raise ValueError("idempotency_key must not be empty")


class FileInbox:
    """Writes each handoff to <directory>/<key>.json, for development and for teams that poll a folder."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileInbox({str(self.directory)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; present so callers can treat every sink alike."""

    def path_for(self, idempotency_key: str) -> Path:
        """Where the handoff with this key is (or would be) written."""
        _require_key(idempotency_key)
        return self.directory / f"{file_stem(idempotency_key)}.json"

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str:
        """Write pretty UTF-8 JSON; the same key overwrites the same file. Returns the path."""
        path = self.path_for(idempotency_key)
        data = (json.dumps(payload.document, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise RetriableHandoffError(f"could not write {path}: {exc.strerror or exc}") from exc
        return str(path)


# --- webhook ---------------------------------------------------------------------------------

_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,255}")


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses a marketing webhook has no business reaching (SSRF into our own network)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


class WebhookSink:
    """POSTs handoffs as Standard Webhooks (signed with HMAC-SHA256), so receivers can verify them.

    webhook-id is the idempotency key, so a receiver that deduplicates on it sees one handoff
    however often we retry. Redirects are not followed (a signed body should not wander).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        allow_private: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("webhook URL must be http:// or https://")
        try:
            host = parts.hostname
            port = parts.port
        except ValueError:
            raise ValueError("webhook URL has a malformed host or port") from None
        if not host:
            raise ValueError("webhook URL has no host")
        try:
            signer = Webhook(secret)
        except Exception:
            # The library's messages are safe today, but the secret must never leak via a chained error.
            raise ValueError("webhook secret is not a valid Standard Webhooks secret ('whsec_' + base64)") from None
        self.url = url
        self.host = host
        self.port = port if port is not None else (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.allow_private = allow_private
        self._signer = signer
        self._client = client
        self._owns_client = client is None

    def __repr__(self) -> str:
        # Only the host: URL paths and queries often carry tokens.
        return f"WebhookSink(host={self.host!r}, allow_private={self.allow_private})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this sink created it; an injected client belongs to the caller."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def check_destination(self) -> None:
        """Refuse hosts that resolve to non-public addresses unless allow_private is set.

        This is a resolve-then-connect check: a hostile DNS server could still rebind between
        the two lookups, so it guards against misconfiguration, not a determined attacker.
        """
        if self.allow_private:
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise RetriableHandoffError(f"webhook host {self.host} did not resolve") from exc
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if _forbidden(address):
                raise FatalHandoffError(
                    f"webhook host {self.host} resolves to non-public address {address}; "
                    "refusing (set allow_private to deliver to internal hosts)"
                )

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str:
        """POST the signed payload (the document as queued); "http <status>" on 2xx, else a HandoffError."""
        _require_key(idempotency_key)
        if not _HEADER_SAFE.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-255 printable ASCII characters without spaces")
        body = json.dumps(payload.document, ensure_ascii=False, separators=(",", ":"))
        self.check_destination()
        timestamp = int(time.time())
        # sign() replaces (not converts) tzinfo with UTC, so the datetime must already be UTC.
        signature = self._signer.sign(idempotency_key, datetime.fromtimestamp(timestamp, tz=UTC), body)
        headers = {
            "content-type": "application/json",
            "webhook-id": idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "user-agent": "leadflow-handoff",
        }
        where = f"webhook to {self.host}"
        try:
            response = self._http().post(self.url, content=body.encode("utf-8"), headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise RetriableHandoffError(f"{where} timed out after {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise RetriableHandoffError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        reading = read_status(status)
        if reading is Reading.ok:
            log.debug("%s delivered %s: %s", where, idempotency_key, status)
            return f"http {status}"
        if reading is Reading.gone:
            raise DestinationGoneError(f"{where} answered 410 Gone; disable this destination", status=status)
        if reading is Reading.retry:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetriableHandoffError(f"{where} answered {status}", retry_after=retry_after, status=status)
        if reading is Reading.redirect:
            raise FatalHandoffError(f"{where} answered {status} (redirects are not followed)", status=status)
        raise FatalHandoffError(f"{where} answered {status}", status=status)


# --- URL -------------------------------------------------------------------------------------


def sink_from_url(
    url: str, *, base_dir: Path, secret: str | None, allow_private: bool = False
) -> FileInbox | WebhookSink:
    """Build a sink from LEADFLOW_HANDOFF_URL-style text.

    Returns the concrete union (both are HandoffSinks) so callers can also use it in `with`.

    file://handoff-inbox, file:handoff-inbox → FileInbox(base_dir/handoff-inbox); file:///abs → absolute;
    http(s)://… → WebhookSink, which needs the signing secret.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        raw = unquote(parts.netloc + parts.path)
        if not raw:
            raise ValueError("file: URL names no directory")
        target = Path(raw)
        return FileInbox(target if target.is_absolute() else Path(base_dir) / target)
    if scheme in ("http", "https"):
        if not secret:
            raise ValueError(MISSING_SECRET_MESSAGE)
        return WebhookSink(url.strip(), secret, allow_private=allow_private)
    if not scheme:
        raise ValueError("handoff URL has no scheme; use file: or http(s)://")
    raise ValueError(f"unsupported handoff URL scheme {scheme!r}; use file: or http(s)://")
