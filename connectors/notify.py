"""Notifications to people (sales owners, managers) through apprise: one URL, any channel.

`json://host/path`, `mailto://user:pass@host`, `slack://…`, `msteams://…` and the other apprise
schemes all look the same from here. apprise reports only success or failure, so a failure is
retriable (the caller's backoff and dead-letter horizon decide), and an URL apprise does not
understand is fatal. Error messages name the scheme and host only: the rest of a notification URL
is often a token.
"""

from __future__ import annotations

import logging
from typing import Protocol
from urllib.parse import urlsplit

import apprise

log = logging.getLogger(__name__)


class NotifyError(Exception):
    """A notification was not sent."""


class RetriableNotifyError(NotifyError):
    """The channel refused or could not be reached; try again later."""


class FatalNotifyError(NotifyError):
    """The URL is not a notification URL apprise supports; retrying will not help."""


class Notifier(Protocol):
    def send(self, *, url: str, title: str, body: str) -> None: ...


def describe(url: str) -> str:
    """scheme://host of a notification URL, safe for logs and reports."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "an unparseable URL"
    return f"{parts.scheme}://{host}" if host else f"{parts.scheme}://"


class AppriseNotifier:
    """Sends one message to one apprise URL per call."""

    def send(self, *, url: str, title: str, body: str) -> None:
        channel = apprise.Apprise()
        if not channel.add(url):
            raise FatalNotifyError(f"{describe(url)} is not a notification URL apprise supports")
        # Plain text in: apprise escapes it for HTML (mail) and markdown channels, so a lead named
        # "<b>Ann</b>" is shown as typed, and keeps the line breaks.
        if not channel.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT):
            raise RetriableNotifyError(f"notification to {describe(url)} failed")
        log.debug("notified %s", describe(url))
