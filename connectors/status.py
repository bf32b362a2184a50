"""The one reading of an HTTP status, shared by vendor sources, webhooks and CRM sinks.

Each caller words its own error (a source names itself, a webhook its host) but none decides
on its own which statuses are worth retrying:

- 2xx `ok`; 3xx `redirect` (never followed: a vendor API may still answer with a body, such as
  Salesforce's 300 Multiple Choices, while a signed webhook body must not wander);
- 408, 425, 429 and 5xx `retry`. 425 Too Early (RFC 8470) is the server refusing a request sent
  in TLS early data until the handshake completes: the same request sent again succeeds, so it is
  retried like a 408 (the webhook sink used to treat it as fatal, the vendor client as retriable);
- 401 `auth` (someone has to renew the credentials), 410 `gone` (the endpoint is retired);
- every other status (other 4xx, nonsense like 600) `refused`: retrying will not help.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime
from enum import Enum

__all__ = ["RETRY_STATUSES", "Reading", "parse_retry_after", "read_status"]

RETRY_STATUSES = frozenset({408, 425, 429})


class Reading(Enum):
    ok = "ok"
    redirect = "redirect"
    retry = "retry"
    auth = "auth"
    gone = "gone"
    refused = "refused"


def read_status(status: int) -> Reading:
    """What an HTTP status means for the caller: see the module's docstring."""
    if 200 <= status < 300:
        return Reading.ok
    if 300 <= status < 400:
        return Reading.redirect
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Reading.retry
    if status == 401:
        return Reading.auth
    if status == 410:
        return Reading.gone
    return Reading.refused


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or junk."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
