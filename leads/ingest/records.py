"""Turning one raw input record into a validated activity, or a reason to quarantine it.

Every source (files, CRMs, the web endpoint) maps its own shape onto the same raw dict, so the
rules for what counts as a valid activity live here, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

import msgspec
import orjson

from leadflow.leads.db.models import ActivityType, Lead

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
    "consent": bool,  # marketing email consent: true (given) or false (withdrawn)
}
# The lead table's column sizes: longer text is cut (as target is), numbers out of range are refused,
# so one odd record is stored or quarantined instead of failing its whole page on PostgreSQL.
PROFILE_LENGTHS: dict[str, int] = {
    name: Lead.__table__.c[name].type.length for name, kind in PROFILE_FIELDS.items() if kind is str
}
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
_TYPES: dict[object, ActivityType] = {t.value: t for t in ActivityType}
_TYPE_VALUES: dict[object, str] = {t.value: t.value for t in ActivityType}
_MISSING = object()
_EMAIL_CACHE_LIMIT = 200_000


def normalise_email(raw: object, *, plus_addressing: PlusAddressing = "keep") -> str | None:
    """Lower-cased and trimmed, or None when it is not an email address.

    With `plus_addressing="strip"`, `anna+news@x.com` is `anna@x.com`: one lead however she tags her address.
    """
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if not (EMAIL_RE.match(email) and len(email) <= 320 and email.isprintable()):
        return None
    if plus_addressing == "strip":
        local, _, domain = email.rpartition("@")
        base = local.split("+", 1)[0]
        if base:
            email = f"{base}@{domain}"
    return email


def _text(value: object, limit: int) -> str:
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


def _source_id(raw: dict[str, Any]) -> str:
    source_id = _text(raw["id"], 200) if raw.get("id") is not None else ""
    if source_id == "":
        raise RecordError("missing_id", "every record needs an 'id' unique within its source")
    return source_id


def _bad_email(raw: dict[str, Any]) -> RecordError:
    return RecordError("bad_email", f"missing or invalid email {raw.get('email')!r}")


class ActivityParser:
    """`parse_activity` for a stream of records: the run's clock fixed once, emails normalised once each.

    `raw_size` (the length of the text the record was parsed from) lets the properties size check
    be skipped when the whole record is too small for its properties to exceed the limit.
    """

    def __init__(self, *, now: datetime, plus_addressing: PlusAddressing = "keep") -> None:
        self.latest = now + FUTURE_TOLERANCE
        self.plus_addressing = plus_addressing
        self._emails: dict[object, str | None] = {}

    def email(self, raw: object) -> str | None:
        if type(raw) is not str:
            return normalise_email(raw, plus_addressing=self.plus_addressing)
        email = self._emails.get(raw, _MISSING)
        if email is _MISSING:
            if len(self._emails) >= _EMAIL_CACHE_LIMIT:
                self._emails.clear()
            email = self._emails[raw] = normalise_email(raw, plus_addressing=self.plus_addressing)
        return email  # type: ignore[return-value]

    def __call__(self, raw: dict[str, Any], *, raw_size: int | None = None) -> ActivityRecord:
        """Validate one raw record (keys: id, email, type, at, target, properties, lead).

        The checks and their order are those of `parse_activity`; the common case (plain ASCII
        text, a known email, a "…Z" timestamp) takes short cuts, anything else the general path.
        """
        get = raw.get
        source_id = get("id")
        if type(source_id) is str and source_id.isascii() and "\x00" not in source_id:
            source_id = source_id.strip()[:200]
            if not source_id:
                raise RecordError("missing_id", "every record needs an 'id' unique within its source")
        else:
            source_id = _source_id(raw)
        email = get("email")
        email = self._emails.get(email, _MISSING) if type(email) is str else _MISSING
        if email is _MISSING:
            email = self.email(get("email"))
        if email is None:
            raise _bad_email(raw)
        kind = get("type")
        kind = _TYPES.get(kind) if type(kind) is str else None
        if kind is None:
            kind = _TYPES.get(str(get("type", "")).strip())
            if kind is None:
                raise RecordError("unknown_type", f"unknown activity type {get('type')!r}")
        at = get("at")
        occurred_at = None
        if type(at) is str and at.endswith("Z"):
            try:  # the common "…Z" form: already UTC, no zone arithmetic needed
                occurred_at = datetime.fromisoformat(at[:-1])
            except ValueError:
                occurred_at = None
            if occurred_at is not None and occurred_at.tzinfo is not None:
                occurred_at = None
        if occurred_at is None:
            occurred_at = parse_timestamp(at)
        if occurred_at > self.latest:
            raise RecordError("future_timestamp", f"timestamp {at} is in the future")
        properties = get("properties") or {}
        if type(properties) is not dict and not isinstance(properties, dict):
            raise RecordError("bad_properties", "'properties' must be an object")
        if properties and (raw_size is None or raw_size * 4 > MAX_PROPERTIES_BYTES):
            if len(json.dumps(properties, default=str)) > MAX_PROPERTIES_BYTES:
                raise RecordError("oversized_properties", f"'properties' exceeds {MAX_PROPERTIES_BYTES} bytes")
        target = get("target")
        if target is None or target == "":
            target = None
        elif type(target) is str and target.isascii() and "\x00" not in target:
            target = target.strip()[:2000]
        else:
            target = _text(target, 2000)
        lead = get("lead")
        return ActivityRecord(source_id, email, kind, occurred_at, target, properties, _profile(lead) if lead else None)

    def row(self, raw: dict[str, Any], *, raw_size: int | None = None) -> ActivityRow:
        """`self(raw)` as a plain tuple ready to store (see `ActivityRow`), several times cheaper to build,
        send to another process and insert than an `ActivityRecord`.

        The common shape (ASCII id and target, a known type, a "YYYY-MM-DDTHH:MM:SSZ" time) is checked
        by `_plain_row` with exactly the rules of `__call__`; any other record goes through `__call__`
        itself, so every rule and every error message stays in one place.
        """
        get = raw.get
        source_id, email, kind, at, target, properties = (
            get("id"),
            get("email"),
            get("type"),
            get("at"),
            get("target"),
            get("properties"),
        )
        if (
            type(source_id) is str
            and type(email) is str
            and type(kind) is str
            and type(at) is str
            and (properties is None or type(properties) is dict)
            and (target is None or type(target) is str)
        ):
            row = self._plain_row(source_id, email, kind, at, target, properties, get("lead"), raw_size)
            if row is not None:
                return row
        return record_row(self(raw, raw_size=raw_size))

    def json_row(self, line: bytes) -> ActivityRow | None:
        """`row` of one JSON line in the common shape, decoded and type-checked by msgspec in one C call;
        None for any other line (the caller then takes the general way, which names what is wrong)."""
        try:
            raw = _decode_plain(line)
        except (msgspec.MsgspecError, ValueError):  # not JSON, another shape, bytes that are not UTF-8
            return None
        try:
            return self._plain_row(
                raw.id, raw.email, raw.type, raw.at, raw.target, raw.properties, raw.lead, len(line) + 1
            )
        except RecordError:  # a bad lead profile: the general way rejects the line with its message
            return None

    def _plain_row(
        self,
        source_id: str,
        email: str,
        kind: str,
        at: str,
        target: str | None,
        properties: dict[str, Any] | None,
        lead: object,
        raw_size: int | None,
    ) -> ActivityRow | None:
        """The stored row of a record in the common shape (text fields already known to be str), or None
        when it is not in that shape or breaks a rule: `__call__` then decides, with its message."""
        if not (
            len(at) == 20
            and at[19] == "Z"
            and at[4] == "-"
            and at[7] == "-"
            and at[13] == ":"
            and at[16] == ":"
            and source_id.isascii()
            and "\x00" not in source_id
            and (target is None or (target.isascii() and "\x00" not in target))
            and (not properties or (raw_size is not None and raw_size * 4 <= MAX_PROPERTIES_BYTES))
        ):
            return None
        source_id = source_id.strip()[:200]
        normalised = self._emails.get(email, _MISSING)
        if normalised is _MISSING:
            normalised = self.email(email)
        value = _TYPE_VALUES.get(kind)
        if not source_id or normalised is None or value is None:
            return None
        try:
            occurred_at = _fromisoformat(at[:19])
        except ValueError:
            return None
        if occurred_at > self.latest:
            return None
        return (
            source_id,
            normalised,  # type: ignore[return-value]
            value,
            f"{at[:10]} {at[11:19]}.000000",
            target.strip()[:2000] if target else None,
            properties_json(properties) if properties else "{}",
            _profile(lead) if lead else None,
        )


class _PlainActivity(msgspec.Struct):
    """A JSON activity line in the common shape; anything else fails to decode and takes the general way."""

    id: str
    email: str
    type: str
    at: str
    target: str | None = None
    properties: dict[str, Any] | None = None
    lead: Any = None


_decode_plain = msgspec.json.Decoder(_PlainActivity).decode


def parse_activity(raw: dict[str, Any], *, now: datetime, plus_addressing: PlusAddressing = "keep") -> ActivityRecord:
    """Validate one raw record (keys: id, email, type, at, target, properties, lead)."""
    return ActivityParser(now=now, plus_addressing=plus_addressing)(raw)


def parse_profile(raw: dict[str, Any], *, plus_addressing: PlusAddressing = "keep") -> ProfileRecord:
    """Validate a CRM record mapped onto {id, email, lead, crm_id}: who the lead is, without an activity."""
    source_id = _source_id(raw)
    email = normalise_email(raw.get("email"), plus_addressing=plus_addressing)
    if email is None:
        raise _bad_email(raw)
    crm_id = raw.get("crm_id")
    return ProfileRecord(source_id, email, _profile(raw.get("lead")), str(crm_id) if crm_id is not None else None)


def _profile(raw: object) -> dict[str, Any] | None:
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
            profile[name] = _text(value, PROFILE_LENGTHS[name])
    return profile or None


# A validated activity as a plain tuple: (source_id, email, type value, occurred_at as naive-UTC text
# "YYYY-MM-DD HH:MM:SS.ffffff" (SQLite's storage form), target, properties as JSON text, profile or None).
ActivityRow = tuple[str, str, str, str, str | None, str, dict[str, Any] | None]
_fromisoformat = datetime.fromisoformat


def properties_json(value: dict[str, Any]) -> str:
    """Properties as the JSON text stored in `activity.properties`."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits, which the standard parser accepts
        return json.dumps(value, default=str)


def record_row(record: ActivityRecord) -> ActivityRow:
    """An `ActivityRecord` as an `ActivityRow`."""
    props = record.properties
    return (
        record.source_id,
        record.email,
        record.type.value,
        record.occurred_at.isoformat(" ", "microseconds"),
        record.target,
        properties_json(props) if props else "{}",
        record.profile,
    )


def row_record(row: ActivityRow) -> ActivityRecord:
    """An `ActivityRow` as an `ActivityRecord` (for callers that want objects; storing uses the rows)."""
    source_id, email, kind, at, target, props, profile = row
    try:
        properties = orjson.loads(props)
    except orjson.JSONDecodeError:  # integers beyond 64 bits
        properties = json.loads(props)
    return ActivityRecord(source_id, email, _TYPES[kind], _fromisoformat(at), target, properties, profile)


class ActivityColumns(Sequence[ActivityRecord]):
    """A page's validated activities kept column by column (`.columns`: the seven fields of
    `ActivityRow`, each a sequence), read as `ActivityRecord`s.

    File sources hand these to `store_batch`, which binds the columns to SQLite without building a
    row per activity in Python; reading an item builds its record on demand.
    """

    __slots__ = ("columns",)

    def __init__(self, columns: Sequence[Sequence[Any]] | None = None) -> None:
        self.columns: Sequence[Sequence[Any]] = columns if columns is not None else tuple([] for _ in range(7))

    @classmethod
    def of_rows(cls, rows: Sequence[ActivityRow]) -> ActivityColumns:
        return cls(list(zip(*rows, strict=True)) if rows else None)

    def __len__(self) -> int:
        return len(self.columns[0])

    def row(self, index: int) -> ActivityRow:
        return tuple(column[index] for column in self.columns)  # type: ignore[return-value]

    @overload
    def __getitem__(self, index: int) -> ActivityRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[ActivityRecord]: ...
    def __getitem__(self, index: int | slice) -> ActivityRecord | list[ActivityRecord]:
        if isinstance(index, slice):
            return [row_record(self.row(i)) for i in range(len(self))[index]]
        return row_record(self.row(range(len(self))[index]))

    def __iter__(self) -> Iterator[ActivityRecord]:
        return map(row_record, zip(*self.columns, strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ActivityColumns):
            return list(map(list, self.columns)) == list(map(list, other.columns))
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    def __repr__(self) -> str:
        return f"ActivityColumns({len(self)} rows)"


def as_columns(records: Sequence[ActivityRecord]) -> Sequence[Sequence[Any]]:
    """The seven `ActivityRow` columns of any sequence of records (free for `ActivityColumns`)."""
    if isinstance(records, ActivityColumns):
        return records.columns
    return ActivityColumns.of_rows([record_row(r) for r in records]).columns
