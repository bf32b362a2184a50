"""Turning one raw input record into a validated activity, or a reason to quarantine it.

Every source (files, CRMs, the web endpoint) maps its own shape onto the same raw dict, so the
rules for what counts as a valid activity live here, once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from leads.models import ActivityType, Lead

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_PROPERTIES_BYTES = 16_384
FUTURE_TOLERANCE = timedelta(days=1)
PROFILE_FIELDS: dict[str, type] = {
    "first_name": str,
    "last_name": str,
    "company": str,
    "title": str,
    "industry": str,
    "company_size": int,
    "country": str,
    "timezone": str,
    "budget": str,
    "authority": str,
    "need": str,
    "timing": str,
}
# The lead table's column sizes: longer text is cut (as target is), numbers out of range are refused,
# so one odd record is stored or quarantined instead of failing its whole page on PostgreSQL.
PROFILE_LENGTHS: dict[str, int] = {
    name: Lead.__table__.c[name].type.length for name, kind in PROFILE_FIELDS.items() if kind is str
}
MAX_COMPANY_SIZE = 2_147_483_647  # INTEGER


class RecordError(ValueError):
    """Why a record was refused: a short machine-friendly reason and a human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class ActivityRecord:
    source_id: str
    email: str
    type: ActivityType
    occurred_at: datetime  # naive UTC
    target: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rejected:
    """A record that did not pass, kept whole so it can be fixed and replayed."""

    location: str
    reason: str
    detail: str
    raw: str


def normalise_email(raw: object) -> str | None:
    """Lower-cased and trimmed, or None when it is not an email address."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    return email if EMAIL_RE.match(email) and len(email) <= 320 and email.isprintable() else None


def _text(value: object, limit: int) -> str:
    """Text a database can store: no NUL characters, no lone surrogates (from JSON \\u escapes), cut to `limit`."""
    text = str(value).replace("\x00", "").strip()
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


def parse_timestamp(raw: object) -> datetime:
    """ISO 8601 (a trailing Z allowed) to naive UTC; a timestamp without zone is taken as UTC."""
    if not isinstance(raw, str) or not raw.strip():
        raise RecordError("bad_timestamp", f"'at' must be an ISO 8601 timestamp, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise RecordError("bad_timestamp", f"cannot parse timestamp {raw!r}") from None
    return parsed


def parse_activity(raw: dict[str, Any], *, now: datetime) -> ActivityRecord:
    """Validate one raw record (keys: id, email, type, at, target, properties, lead)."""
    source_id = _text(raw["id"], 200) if raw.get("id") is not None else ""
    if source_id == "":
        raise RecordError("missing_id", "every record needs an 'id' unique within its source")
    email = normalise_email(raw.get("email"))
    if email is None:
        raise RecordError("bad_email", f"missing or invalid email {raw.get('email')!r}")
    try:
        kind = ActivityType(str(raw.get("type", "")).strip())
    except ValueError:
        raise RecordError("unknown_type", f"unknown activity type {raw.get('type')!r}") from None
    occurred_at = parse_timestamp(raw.get("at"))
    if occurred_at > now + FUTURE_TOLERANCE:
        raise RecordError("future_timestamp", f"timestamp {raw.get('at')} is in the future")
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        raise RecordError("bad_properties", "'properties' must be an object")
    if len(json.dumps(properties, default=str)) > MAX_PROPERTIES_BYTES:
        raise RecordError("oversized_properties", f"'properties' exceeds {MAX_PROPERTIES_BYTES} bytes")
    target = raw.get("target")
    return ActivityRecord(
        source_id=source_id,
        email=email,
        type=kind,
        occurred_at=occurred_at,
        target=_text(target, 2000) if target not in (None, "") else None,
        properties=properties,
        profile=_profile(raw.get("lead")),
    )


def _profile(raw: object) -> dict[str, Any] | None:
    """The known profile fields of a record, coerced; unknown keys are ignored."""
    if not isinstance(raw, dict):
        return None
    profile: dict[str, Any] = {}
    for name, kind in PROFILE_FIELDS.items():
        value = raw.get(name)
        if value in (None, ""):
            continue
        if kind is int:
            try:
                number = int(value)
            except (TypeError, ValueError, OverflowError):
                raise RecordError("bad_profile", f"lead.{name} must be a whole number, got {value!r}") from None
            if not 0 <= number <= MAX_COMPANY_SIZE:
                raise RecordError("bad_profile", f"lead.{name} must be between 0 and {MAX_COMPANY_SIZE}, got {value!r}")
            profile[name] = number
        elif name == "country":
            # Cutting "Netherlands" to "NE" would silently mean Niger: refuse what is not a code.
            if not re.fullmatch(r"[A-Za-z]{2}", str(value).strip()):
                raise RecordError(
                    "bad_profile", f"lead.country must be a two-letter country code like NL, got {value!r}"
                )
            profile[name] = str(value).strip().upper()
        else:
            profile[name] = _text(value, PROFILE_LENGTHS[name])
    return profile or None
