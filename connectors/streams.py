"""Declared REST streams and the loop that reads them incrementally (after the Singer SDK).

A vendor connector declares its streams: a name, how to ask for records changed since a
moment, how pages follow each other (a paginator), where the records are in a response, each
record's replication value (when it last changed) and how a record maps onto leadflow's raw
activity or profile dict. `RestSource.pages` does the rest, the same way for every vendor.

The cursor saved with each page keeps the start value of the run apart from the last value
seen (`since` and `seen`): a stream whose records come in replication order resumes after a
crash from `seen`; one whose records do not (newest first, or unordered) starts again from
`since`, re-reading what it already stored (a no-op: activity ids are unique per source)
rather than skipping what lay between. Only a run that reaches the end of a stream moves
`since` forward.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from leadflow.connectors.http import ApiClient
from leadflow.connectors.pages import Page
from leadflow.connectors.paginators import PageRequest, Paginator
from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.leads.ingest.parser import ActivityParser
from leadflow.leads.ingest.records import (
    ActivityRecord,
    PlusAddressing,
    ProfileRecord,
    RecordError,
    Rejected,
    parse_profile,
)

IGNORE = "ignore"

# What a stream makes of one vendor record: activities, a lead profile, or nothing on purpose.
Mapped = tuple[Literal["activity", "profile", "skip"], dict[str, Any]]


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_moment(value: object) -> datetime | None:
    """A vendor time (ISO 8601 text, or epoch milliseconds) as an aware UTC datetime; None if absent or junk."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_moment(int(text))
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
            text = f"{text[:-2]}:{text[-2:]}"  # Salesforce's +0000
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return None


def iso_or_raw(value: object) -> object:
    """A vendor time as ISO 8601 for the activity's `at`; what cannot be read is passed on to be refused."""
    moment = parse_moment(value)
    return isoformat(moment) if moment is not None else value


@dataclass(frozen=True)
class StreamState:
    """Where a stream stands: `since` everything before it was stored by a complete run; `seen` the
    latest replication value committed by the run in progress (or the one that died)."""

    since: datetime | None
    seen: datetime | None = None
    done: bool = True

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None, *, start: datetime | None) -> StreamState:
        if not cursor:
            return cls(since=start)
        return cls(
            since=parse_moment(cursor.get("since")),
            seen=parse_moment(cursor.get("seen")),
            done=bool(cursor.get("done", True)),
        )

    def begin(self) -> StreamState:
        """The state a new run starts in: a finished run's `seen` is already folded into `since`."""
        return StreamState(since=self.since, seen=None if self.done else self.seen, done=False)

    def resume_from(self, *, ordered: bool) -> datetime | None:
        if ordered and not self.done and self.seen is not None:
            return self.seen
        return self.since

    def advance(self, value: datetime | None, *, last: bool) -> StreamState:
        seen = self.seen if value is None else value if self.seen is None else max(self.seen, value)
        if last:
            since = self.since if seen is None else seen if self.since is None else max(self.since, seen)
            return StreamState(since=since, seen=None, done=True)
        return StreamState(since=self.since, seen=seen, done=False)

    def to_cursor(self) -> dict[str, Any]:
        return {
            "since": isoformat(self.since) if self.since else None,
            "seen": isoformat(self.seen) if self.seen else None,
            "done": self.done,
        }


def pick(record: Mapping[str, Any], path: str) -> Any:
    """`record["Account"]["Name"]` for "Account.Name"; None when any step is missing."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def profile_from(record: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The lead profile a vendor record carries, per the field mapping, cleaned for CRM data.

    CRMs hold sizes as ranges ("25-50", "1000+": the first number is kept) and countries as
    names: a country is kept only when it is a two-letter code (map a code-valued field to keep it).
    """
    profile: dict[str, Any] = {}
    for name, path in fields.items():
        if not path or name not in PROFILE_FIELDS:
            continue
        value = pick(record, path)
        if value is None or value == "" or isinstance(value, dict | list):
            continue
        if name == "company_size":
            digits = next(iter(_numbers(str(value))), None)
            if digits is None:
                continue
            value = digits
        elif name == "country":
            text = str(value).strip()
            if len(text) != 2 or not text.isalpha():
                continue
        profile[name] = value
    return profile


def _numbers(text: str) -> Iterable[int]:
    number = ""
    for char in text.replace(",", ""):
        if char.isdigit():
            number += char
        elif number:
            yield int(number)
            number = ""
    if number:
        yield int(number)


def activity(kind: str | None, **raw: Any) -> Mapped:
    """The raw activity dict a vendor record maps to, or a skip when its type maps to IGNORE."""
    return ("skip", {}) if kind is None else ("activity", {"type": kind, **raw})


class EmailsById:
    """Record id → email for the records activities point at, fetched in chunks of unseen ids, kept for the run."""

    def __init__(self, fetch: Callable[[ApiClient, list[str]], dict[str, str | None]], *, chunk: int) -> None:
        self.fetch = fetch
        self.chunk = chunk
        self.emails: dict[str, str | None] = {}

    def load(self, ids: Iterable[str], client: ApiClient) -> None:
        wanted = sorted({i for i in ids if i not in self.emails})
        for start in range(0, len(wanted), self.chunk):
            part = wanted[start : start + self.chunk]
            self.emails.update(self.fetch(client, part))
            for record_id in part:
                self.emails.setdefault(record_id, None)  # gone, or not visible: its activities lack an email


def activity_type(key: str, types: Mapping[str, str]) -> str | None:
    """The activity type a vendor event key maps to; None for IGNORE; RecordError when nothing maps it."""
    kind = types.get(key)
    if kind is None:
        raise RecordError("unknown_type", f"no activity type for {key!r}: map it under activity_types (or to ignore)")
    return None if kind == IGNORE else kind


class RestStream:
    """A declared stream: subclasses set the class attributes and implement the hooks they need."""

    name: str
    ordered: ClassVar[bool] = True  # records arrive in replication order (oldest first)
    newest_first: ClassVar[bool] = False  # no server-side filter: stop at records older than `since`

    def first_request(self, since: datetime | None) -> PageRequest:
        raise NotImplementedError

    def paginator(self) -> Paginator:
        raise NotImplementedError

    def records(self, body: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        raise NotImplementedError

    def record_id(self, record: Mapping[str, Any]) -> str:
        return str(record.get("id", "?"))

    def prepare(self, records: list[dict[str, Any]], client: ApiClient) -> None:
        """Look up what the page's records refer to (a person's email, say) before mapping them."""

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        raise NotImplementedError


class RestSource:
    """A vendor source: one API client, declared streams, the start date for a first run."""

    def __init__(
        self,
        name: str,
        *,
        client: ApiClient,
        streams: list[RestStream],
        start: datetime | None = None,
        plus_addressing: PlusAddressing = "keep",
    ) -> None:
        self.name = name
        self.client = client
        self._streams = streams
        self.start = start
        self.plus_addressing = plus_addressing

    def streams(self) -> list[RestStream]:
        return list(self._streams)

    def close(self) -> None:
        self.client.close()

    def pages(self, stream: RestStream, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]:
        """Pages of `stream` changed since the cursor; each page's cursor is saved with its records."""
        state = StreamState.from_cursor(cursor, start=self.start).begin()
        since = state.resume_from(ordered=stream.ordered)
        request = stream.first_request(since)
        paginator = stream.paginator()
        parse = ActivityParser(now=now, plus_addressing=self.plus_addressing)
        while True:
            body = self.client.request_json(request.method, request.url, params=request.params, json=request.json)
            paginator.update_state(body)
            records = stream.records(body)
            stop = False
            if stream.newest_first and since is not None:
                kept = [r for r in records if (v := stream.replication_value(r)) is None or v >= since]
                stop, records = len(kept) < len(records), kept
            values = [v for r in records if (v := stream.replication_value(r)) is not None]
            page = self._page(stream, records, parse)
            last = stop or not paginator.has_next_page
            state = state.advance(max(values) if values else None, last=last)
            yield Page(stream.name, page.records, page.rejected, state.to_cursor(), page.profiles, page.skipped)
            if last:
                return
            request = paginator.next_request(request)

    def _page(self, stream: RestStream, records: list[dict[str, Any]], parse: ActivityParser) -> Page:
        stream.prepare(records, self.client)
        activities: list[ActivityRecord] = []
        profiles: list[ProfileRecord] = []
        rejected: list[Rejected] = []
        skipped = 0
        for record in records:
            location = f"{stream.name}:{stream.record_id(record)}"
            try:
                mapped = list(stream.map(record))
            except RecordError as exc:
                rejected.append(_rejected(location, exc, record))
                continue
            for kind, raw in mapped:
                try:
                    if kind == "activity":
                        activities.append(parse(raw))
                    elif kind == "profile":
                        profiles.append(parse_profile(raw, plus_addressing=self.plus_addressing))
                    else:
                        skipped += 1
                except RecordError as exc:
                    rejected.append(_rejected(location, exc, record))
        return Page(stream.name, activities, rejected, {}, profiles, skipped)


def _rejected(location: str, exc: RecordError, record: dict[str, Any]) -> Rejected:
    """The vendor's record whole, so it can be looked at and replayed."""
    return Rejected(location, exc.reason, exc.detail, json.dumps(record, default=str, ensure_ascii=False))


def merged(defaults: Mapping[str, str], overrides: Mapping[str, str | None]) -> dict[str, str]:
    """Vendor defaults with the config's overrides on top; an override of null or "" removes a default."""
    result = dict(defaults)
    for key, value in overrides.items():
        if value in (None, ""):
            result.pop(key, None)
        else:
            result[key] = str(value)
    return result
