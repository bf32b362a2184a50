"""Validating a stream of raw activity records fast: `ActivityParser` fixes the run's clock once, normalises
each email once, and takes short cuts for the common shape (with exactly the rules of the general path).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from leadflow.leads.db.models import ActivityType
from leadflow.leads.ingest.records import (
    FUTURE_TOLERANCE,
    MAX_PROPERTIES_BYTES,
    TYPES_BY_VALUE,
    ActivityRecord,
    PlusAddressing,
    RecordError,
    bad_email,
    clean_text,
    normalise_email,
    parse_timestamp,
    profile_of,
    source_id_of,
)
from leadflow.leads.ingest.rows import ActivityRow, properties_json, record_row

_TYPE_VALUES: dict[object, str] = {t.value: t.value for t in ActivityType}
# Not in the email cache: a str (so a lookup is `str | None`) that no normalised email can equal.
_MISSING = "\x00missing"
_EMAIL_CACHE_LIMIT = 200_000
_fromisoformat = datetime.fromisoformat


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
        return email

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
            source_id = source_id_of(raw)
        email = get("email")
        email = self._emails.get(email, _MISSING) if type(email) is str else _MISSING
        if email is _MISSING:
            email = self.email(get("email"))
        if email is None:
            raise bad_email(raw)
        kind = get("type")
        kind = TYPES_BY_VALUE.get(kind) if type(kind) is str else None
        if kind is None:
            kind = TYPES_BY_VALUE.get(str(get("type", "")).strip())
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
            target = clean_text(target, 2000)
        lead = get("lead")
        return ActivityRecord(
            source_id, email, kind, occurred_at, target, properties, profile_of(lead) if lead else None
        )

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
            normalised,
            value,
            f"{at[:10]} {at[11:19]}.000000",
            target.strip()[:2000] if target else None,
            properties_json(properties) if properties else "{}",
            profile_of(lead) if lead else None,
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
