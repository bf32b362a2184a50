"""Turning one raw input record into a validated activity, or a reason to quarantine it.

Every source (files, CRMs, the web endpoint) maps its own shape onto the same raw dict, so the
rules for what counts as a valid activity live here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import PROFILE_FIELDS, ActivityType, Lead

# The common address, checked without the validator (about 30 times faster): a dot-atom of plain
# characters at a host name of plain labels. Everything else goes to `email_validator`, which
# accepts a subset of what this one does not, so both paths agree on what this one accepts.
PLAIN_EMAIL_RE = re.compile(r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
MAX_PROPERTIES_BYTES = 16_384
FUTURE_TOLERANCE = timedelta(days=1)


# The lead table's column sizes: longer text is cut (as target is), numbers out of range are refused,
# so one odd record is stored or quarantined instead of failing its whole page on PostgreSQL.
def _text_length(name: str) -> int:
    kind = table_of(Lead).c[name].type
    if isinstance(kind, TypeDecorator):  # SQLModel's AutoString wraps a String
        kind = kind.impl_instance
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"lead.{name} is not a text column of bounded length")
    return kind.length


PROFILE_LENGTHS: dict[str, int] = {name: _text_length(name) for name, kind in PROFILE_FIELDS.items() if kind is str}
# Consent as it arrives from forms, CSV columns and CRM fields.
CONSENT_WORDS: dict[str, bool] = {
    **dict.fromkeys(("true", "yes", "y", "1", "granted", "given", "opt-in", "opted-in", "opt_in"), True),
    **dict.fromkeys(("false", "no", "n", "0", "withdrawn", "denied", "opt-out", "opted-out", "opt_out"), False),
}
MAX_COMPANY_SIZE = 2_147_483_647  # INTEGER


class RecordError(ValueError):
    """Why a record was refused: a short machine-friendly reason and a human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(slots=True)
class ActivityRecord:
    """A validated activity. Treat it as immutable (it is not frozen only because frozen dataclasses
    are several times slower to build, and ingest builds hundreds of thousands a second)."""

    source_id: str
    email: str
    type: ActivityType
    occurred_at: datetime  # naive UTC
    target: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


@dataclass(slots=True)
class ProfileRecord:
    """Who a lead is, from a CRM record (a contact, a person): identity and profile, no activity.

    `crm_id` is the record's id in the CRM, kept on the lead per source for later handoff.
    """

    source_id: str
    email: str
    profile: dict[str, Any] | None = None
    crm_id: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A record that did not pass, kept whole so it can be fixed and replayed."""

    location: str
    reason: str
    detail: str
    raw: str


PlusAddressing = Literal["keep", "strip"]
TYPES_BY_VALUE: dict[object, ActivityType] = {t.value: t for t in ActivityType}


def _plain(email: str) -> bool:
    local, _, domain = email.partition("@")
    return (
        len(local) <= 64
        and len(email) <= 254
        and PLAIN_EMAIL_RE.fullmatch(email) is not None
        and "--" not in domain  # IDNA labels (xn--) are decoded by the validator
        and domain.rsplit(".", 1)[-1] not in SPECIAL_USE_DOMAIN_NAMES
    )


def email_problem(raw: object) -> str | None:
    """Why `raw` is not one valid mailbox (None when it is), in the validator's words."""
    if not isinstance(raw, str):
        return "not text"
    email = raw.strip().lower()
    if _plain(email):
        return None
    try:
        validate_email(email, check_deliverability=False)  # syntax only: no DNS at ingest
    except EmailNotValidError as exc:
        return str(exc)
    return None


def normalise_email(raw: object, *, plus_addressing: PlusAddressing = "keep") -> str | None:
    """One valid mailbox, lower-cased and trimmed, or None when it is not (see `email_problem` for why).

    Internationalised addresses (RFC 6531) are kept in Unicode, the domain normalised by IDNA
    (`jürgen@xn--mller-kva.example` is `jürgen@müller.example`); nurture/message.py encodes the
    domain again for the wire. Anything a mail parser could read as more than one address, a
    display name or a quoted local part is refused.
    With `plus_addressing="strip"`, `anna+news@x.com` is `anna@x.com`: one lead however she tags her address.
    """
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if not _plain(email):
        try:
            email = validate_email(email, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            return None
    if plus_addressing == "strip":
        local, _, domain = email.rpartition("@")
        base = local.split("+", 1)[0]
        if base:
            email = f"{base}@{domain}"
    return email


def clean_text(value: object, limit: int) -> str:
    """Text a database can store: no NUL characters, no lone surrogates (from JSON \\u escapes), cut to `limit`."""
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value.strip()[:limit]  # the common case, without the round trip below
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


def source_id_of(raw: dict[str, Any]) -> str:
    source_id = clean_text(raw["id"], 200) if raw.get("id") is not None else ""
    if source_id == "":
        raise RecordError("missing_id", "every record needs an 'id' unique within its source")
    return source_id


def bad_email(raw: dict[str, Any]) -> RecordError:
    """The quarantine reason for a record's email field, with what is wrong with it."""
    value = raw.get("email")
    problem = "missing" if value in (None, "") else email_problem(value)
    return RecordError("bad_email", f"missing or invalid email {value!r} (field 'email': {problem})")


def parse_profile(raw: dict[str, Any], *, plus_addressing: PlusAddressing = "keep") -> ProfileRecord:
    """Validate a CRM record mapped onto {id, email, lead, crm_id}: who the lead is, without an activity."""
    source_id = source_id_of(raw)
    email = normalise_email(raw.get("email"), plus_addressing=plus_addressing)
    if email is None:
        raise bad_email(raw)
    crm_id = raw.get("crm_id")
    return ProfileRecord(source_id, email, profile_of(raw.get("lead")), str(crm_id) if crm_id is not None else None)


def profile_of(raw: object) -> dict[str, Any] | None:
    """The known profile fields of a record, coerced; unknown keys are ignored."""
    if not isinstance(raw, dict):
        return None
    profile: dict[str, Any] = {}
    for name, kind in PROFILE_FIELDS.items():
        value = raw.get(name)
        if value in (None, ""):
            continue
        if kind is bool:
            flag = value if isinstance(value, bool) else CONSENT_WORDS.get(str(value).strip().lower())
            if flag is None:
                raise RecordError("bad_profile", f"lead.{name} must be true or false (yes/no), got {value!r}")
            profile[name] = flag
        elif kind is int:
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
            profile[name] = clean_text(value, PROFILE_LENGTHS[name])
    return profile or None
