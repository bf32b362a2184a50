"""The compliance gate: may this email go to this lead now, and if not, skip it or wait until when?

Asked right before each send (and by the dry run), with facts loaded for a whole batch at once.
Skips are final for that email (suppressed, no consent); deferrals name the moment the email may
go (the next send window opening in the lead's time zone, the moment the frequency cap allows it),
so a deferred email is never dropped and never retried before it can succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.leads.config.compliance import WEEKDAYS, ComplianceConfig, ConsentRule, FrequencyCap, SendWindow


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the gate needs to know about a lead at send time."""

    email: str
    timezone: str | None = None
    country: str | None = None
    consent: bool | None = None
    unsubscribed: bool = False
    bounced: bool = False
    suppressed: str | None = None  # the suppression log's reason for this email and sequence, if any
    left_sequence: str | None = None  # why the email's enrollment ended early (replied, reached MQL, ...)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`send`, or `skip` with a reason (final), or `defer` with a reason and the moment to try again."""

    action: str
    reason: str = ""
    until: datetime | None = None  # naive UTC, for defer


SEND = Verdict("send")
# How a suppression log reason reads in reports.
SUPPRESSION_LABELS = {"manual": "do not contact"}


@lru_cache(maxsize=1024)
def _zone(name: str | None, fallback: str) -> tzinfo:
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC


def next_window_opening(window: SendWindow, timezone: str | None, now: datetime) -> datetime | None:
    """None when `now` (naive UTC) is inside the lead's send window, else when it next opens (naive UTC)."""
    zone = _zone(timezone, window.default_timezone)
    local = now.replace(tzinfo=UTC).astimezone(zone)
    days = {WEEKDAYS.index(d) for d in window.days}
    if local.weekday() in days and window.start <= local.time() < window.end:
        return None
    for offset in range(8):
        day: date = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opening = datetime.combine(day, window.start, tzinfo=zone)
        if opening > local:
            return opening.astimezone(UTC).replace(tzinfo=None)
    raise AssertionError("a window with at least one day opens within a week")


def cap_frees_at(cap: FrequencyCap, sent: Sequence[datetime], now: datetime) -> datetime | None:
    """None when another email fits under the cap at `now`, else when it will (the oldest counted send ages out)."""
    since = now - timedelta(days=cap.per_days)
    recent = sorted(t for t in sent if t > since)
    if len(recent) < cap.max_emails:
        return None
    return recent[len(recent) - cap.max_emails] + timedelta(days=cap.per_days)


def consent_missing(rule: ConsentRule, recipient: Recipient) -> str | None:
    if recipient.consent is False:
        return "consent withdrawn"
    if not rule.required or recipient.consent:
        return None
    if rule.countries and recipient.country and recipient.country.upper() not in rule.countries:
        return None
    return "no consent"


def check(config: ComplianceConfig, recipient: Recipient, sent: Sequence[datetime], now: datetime) -> Verdict:
    """The verdict for one email to `recipient` at `now`, given when the lead was last emailed (`sent`)."""
    if recipient.suppressed:  # the log knows why: unsubscribed, bounced, complained, manual
        return Verdict("skip", SUPPRESSION_LABELS.get(recipient.suppressed, recipient.suppressed))
    if recipient.unsubscribed:
        return Verdict("skip", "unsubscribed")
    if recipient.bounced:
        return Verdict("skip", "bounced")
    if recipient.left_sequence:  # queued before the lead converted, replied or moved on: too late now
        return Verdict("skip", f"left the sequence: {recipient.left_sequence}")
    missing = consent_missing(config.consent, recipient)
    if missing:
        return Verdict("skip", missing)
    if config.send_window is not None:
        opening = next_window_opening(config.send_window, recipient.timezone, now)
        if opening is not None:
            return Verdict("defer", "quiet hours", opening)
    if config.frequency_cap is not None:
        frees = cap_frees_at(config.frequency_cap, sent, now)
        if frees is not None:
            return Verdict("defer", "frequency cap", frees)
    return SEND
