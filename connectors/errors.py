"""One tree for every failure of something outside: an API, a webhook or CRM, an SMTP server, a chat channel.

    OutsideError
    ├── Retriable (retry_after)   the same call may work later, not before `retry_after` seconds if set
    └── Fatal                     retrying will not help

Each protocol has a family class that carries its context (`APIError`: the source, HTTP status and
vendor code; `HandoffError`: the status; `MailError`: the SMTP code; `NotifyError`), and every error
actually raised is a leaf that is also `Retriable` or `Fatal`. So a caller that only needs to know
"try again?" writes `except Retriable`, one that cares about the protocol catches its leaves, and
`retry_after` is read the same way everywhere. Messages never carry secrets (tokens, passwords).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "CredentialsRefused",
    "DestinationGoneError",
    "DestinationStopped",
    "Fatal",
    "FatalAPIError",
    "FatalHandoffError",
    "FatalNotifyError",
    "HandoffError",
    "MailError",
    "MailSetupError",
    "NotifyError",
    "OutsideError",
    "PermanentMailError",
    "QuotaExhausted",
    "Retriable",
    "RetriableAPIError",
    "RetriableHandoffError",
    "RetriableNotifyError",
    "TransientMailError",
    "UnconfirmedMailError",
]


class OutsideError(Exception):
    """Something outside leadflow failed; see `Retriable` and `Fatal`."""


class Retriable(OutsideError):
    """The same call may work later; no sooner than `retry_after` seconds when the peer said so."""

    retry_after: float | None = None


class Fatal(OutsideError):
    """The peer refused for a reason retrying will not fix (bad request, refused credentials, bad URL)."""


# --- HTTP APIs (vendor sources and CRM sinks) --------------------------------------------------


class APIError(OutsideError):
    """A vendor call that failed; `source` names the configured source, `status` the HTTP status (if any)."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
    ) -> None:
        self.source = source
        self.status = status
        self.code = code
        self.url = url
        self.detail = message  # without the source prefix, for callers that word their own errors
        where = f" ({status}{' ' + code if code else ''})" if status is not None else ""
        super().__init__(f"source {source!r}: {message}{where}")


class RetriableAPIError(APIError, Retriable):
    """Timeout, connection trouble, rate limit or server error: the same call may work later."""

    def __init__(self, source: str, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(source, message, **kwargs)
        self.retry_after = retry_after


class FatalAPIError(APIError, Fatal):
    """The vendor refused the call for a reason that retrying will not fix."""


class AuthenticationError(FatalAPIError):
    """The credentials were refused (expired, revoked, wrong): someone has to renew them."""


# --- handoff sinks (file inbox, webhook, CRMs) -------------------------------------------------


class HandoffError(OutsideError):
    """A handoff was not delivered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableHandoffError(HandoffError, Retriable):
    """Timeout, connection trouble, 429 or 5xx: try again, no sooner than `retry_after` seconds if set."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class FatalHandoffError(HandoffError, Fatal):
    """The destination rejected this handoff (4xx) or is not allowed; retrying will not help."""


class DestinationGoneError(FatalHandoffError):
    """410 Gone: the receiver says this endpoint is retired, so the destination should be disabled."""


class DestinationStopped(OutsideError):
    """Every handoff to this CRM would fail the same way for now, so the destination stops for the
    run and its rows stay queued, instead of each handoff failing on its own. Not a HandoffError on
    purpose: the outbox must not count it against a row."""

    def __init__(self, destination: str, message: str) -> None:
        super().__init__(f"destination {destination!r}: {message}")
        self.destination = destination


class CredentialsRefused(DestinationStopped, Fatal):
    """The CRM refused the credentials (or there are none): someone has to renew them."""

    def __init__(self, destination: str, message: str) -> None:
        super().__init__(destination, f"the credentials were refused: {message}")


class QuotaExhausted(DestinationStopped, Retriable):
    """The CRM's daily API allowance is used up (HubSpot's DAILY policy, Salesforce's TotalRequests):
    retriable, but by the next run, not within this one."""


# --- mail (SMTP, file outbox) -----------------------------------------------------------------


class MailError(OutsideError):
    """A message was not sent; `code` is the SMTP reply code when the server gave one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class MailSetupError(MailError, Fatal):
    """The transport itself is misconfigured (bad credentials, TLS trouble, sender refused):
    the batch should stop rather than burn through recipients."""


class TransientMailError(MailError, Retriable):
    """4xx, dropped connection or timeout: the same message may succeed later."""


class PermanentMailError(MailError, Fatal):
    """5xx for a recipient: retrying cannot help, so the recipient should be suppressed."""

    def __init__(self, message: str, *, recipient: str, code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.recipient = recipient


class UnconfirmedMailError(MailError, Fatal):
    """The whole message went out but the server's answer never came: it may have been accepted.

    Sending it again could deliver it twice, so callers record it as unconfirmed and never retry.
    """


# --- notifications (apprise) ----------------------------------------------------------------


class NotifyError(OutsideError):
    """A notification was not sent."""


class RetriableNotifyError(NotifyError, Retriable):
    """The channel refused or could not be reached; try again later."""


class FatalNotifyError(NotifyError, Fatal):
    """The URL is not a notification URL apprise supports (or needs a variable that is not set)."""
