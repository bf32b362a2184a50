"""Notifications to people (sales owners, managers) through apprise: one URL, any channel.

`json://host/path`, `mailto://user:pass@host`, `slack://…`, `msteams://…` and the other apprise
schemes all look the same from here. apprise reports only success or failure, so a failure is
retriable (the caller's backoff and dead-letter horizon decide), and an URL apprise does not
understand is fatal. Error messages name the scheme and host only: the rest of a notification URL
is often a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from leadflow.connectors.errors import FatalNotifyError, RetriableNotifyError

log = logging.getLogger(__name__)

# Schemes whose host part is a server's name; in the others (slack://, discord://, tgram://, ...) it is a token.
HOST_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "http", "https"})


class Notifier(Protocol):
    def send(self, *, url: str, title: str, body: str) -> None: ...


def describe(url: str) -> str:
    """scheme://host of a notification URL, safe for logs and reports (no host where it is a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "an unparseable URL"
    if parts.scheme.lower() not in HOST_SCHEMES:
        return f"{parts.scheme}://…"
    return f"{parts.scheme}://{host}" if host else f"{parts.scheme}://"


def secret_parts(url: str) -> list[str]:
    """The pieces of a notification URL that may be secret: user, password, token host, path, query values."""
    try:
        parts = urlsplit(url)
        pieces = [parts.username or "", parts.password or "", *parts.path.split("/")]
        pieces += [value for _, value in parse_qsl(parts.query)]
        if parts.scheme.lower() not in HOST_SCHEMES:  # as written: `hostname` is lower-cased
            pieces.append(parts.netloc.rpartition("@")[2].split(":")[0])
    except ValueError:
        return [url]
    found = {p for piece in pieces for p in (piece, unquote(piece)) if len(p) >= 3}
    return sorted(found, key=len, reverse=True)  # longest first: a token is never half replaced


class _RedactSending(logging.Filter):
    """apprise logs the URL it posts to (path, token and all): while we send, each secret piece becomes '…'."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        pieces: list[str] = getattr(self.local, "pieces", [])
        if pieces:
            message = record.getMessage()
            for piece in pieces:
                message = message.replace(piece, "…")
            record.msg, record.args = message, ()
        return True

    @contextmanager
    def sending(self, url: str) -> Iterator[None]:
        self.local.pieces = secret_parts(url)
        try:
            yield
        finally:
            self.local.pieces = []


_redact = _RedactSending()
logging.getLogger("apprise").addFilter(_redact)


class AppriseNotifier:
    """Sends one message to one apprise URL per call."""

    def send(self, *, url: str, title: str, body: str) -> None:
        with _redact.sending(url):
            channel = apprise.Apprise()
            if not channel.add(url):
                raise FatalNotifyError(f"{describe(url)} is not a notification URL apprise supports")
            # Plain text in: apprise escapes it for HTML (mail) and markdown channels, so a lead named
            # "<b>Ann</b>" is shown as typed, and keeps the line breaks.
            if not channel.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT):
                raise RetriableNotifyError(f"notification to {describe(url)} failed")
        log.debug("notified %s", describe(url))
