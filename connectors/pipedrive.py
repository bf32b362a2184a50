"""Pipedrive: persons, activities and deals from the v2 API, cursor-paginated.

`GET /api/v2/{persons,activities,deals}?updated_since=…&sort_by=update_time&sort_direction=asc`,
paged with `cursor` and `additional_data.next_cursor`. Persons are lead profiles; activities and
deals become activities of the persons they are linked to, whose emails come from
`GET /api/v2/persons?ids=…`.

Auth is an API token in the `x-api-token` header. Errors come as
`{"success": false, "error": …}`; 429s carry `Retry-After` and the `x-ratelimit-*` headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import APIError, Retriable
from leadflow.connectors.http import ApiClient, HeaderToken, classify_status, failed
from leadflow.connectors.paginators import CursorPaginator, PageRequest, Paginator, dig
from leadflow.connectors.status import parse_retry_after
from leadflow.connectors.streams import (
    EmailsById,
    Mapped,
    RestSource,
    RestStream,
    activity,
    activity_type,
    iso_or_raw,
    merged,
    parse_moment,
    profile_from,
)
from leadflow.leads.config.sources import PipedriveSource
from leadflow.leads.ingest.records import PlusAddressing

PERSON_FIELDS = {"first_name": "first_name", "last_name": "last_name", "title": "job_title"}
ACTIVITY_TYPES = {
    # Done activities by type (custom types need a mapping); planned ones have not happened yet.
    "activity:call": "contact_sales",
    "activity:meeting": "contact_sales",
    "activity:lunch": "contact_sales",
    "activity:email": "ignore",
    "activity:task": "ignore",
    "activity:deadline": "ignore",
    "activity:planned": "ignore",
    # Deals by status: a deal opened for a person means sales took the lead on.
    "deal:open": "sales_accepted",
    "deal:won": "deal_won",
    "deal:lost": "deal_lost",
    "deal:deleted": "ignore",
}
IDS_PER_LOOKUP = 100


def classify(source: str) -> Callable[[httpx.Response], APIError | None]:
    def read(response: httpx.Response) -> APIError | None:
        if not failed(response):
            return None
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("error") or response.reason_phrase or "request failed")
        error = classify_status(source, response, message=message, code=str(body.get("errorCode") or "") or None)
        if isinstance(error, Retriable) and response.status_code == 429 and error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers.get("x-ratelimit-reset"))
        return error

    return read


def rfc3339(moment: datetime) -> str:
    """To the second, earlier rather than later: records at the boundary are read again, harmlessly."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ListStream(RestStream):
    """One v2 list endpoint, by update time, oldest first."""

    def __init__(self, name: str, *, page_size: int) -> None:
        self.name = name
        self.page_size = page_size

    def first_request(self, since: datetime | None) -> PageRequest:
        params: dict[str, Any] = {"sort_by": "update_time", "sort_direction": "asc", "limit": self.page_size}
        if since is not None:
            params["updated_since"] = rfc3339(since)
        return PageRequest(url=f"/api/v2/{self.name}", params=params)

    def paginator(self) -> Paginator:
        return CursorPaginator(("additional_data", "next_cursor"), "cursor")

    def records(self, body: Any) -> list[dict[str, Any]]:
        return list(dig(body, ("data",)) or [])

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_moment(record.get("update_time"))


def primary_email(person: Mapping[str, Any]) -> str | None:
    emails = [e for e in person.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    chosen = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    return str(chosen["value"]) if chosen else None


class PersonsStream(ListStream):
    def __init__(self, *, page_size: int, fields: dict[str, str], persons: EmailsById) -> None:
        super().__init__("persons", page_size=page_size)
        self.fields = fields
        self.persons = persons

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        self.persons.emails[str(record.get("id"))] = primary_email(record)  # spares a lookup for their activities
        yield (
            "profile",
            {
                "id": f"person:{record.get('id')}",
                "email": primary_email(record),
                "lead": profile_from(record, self.fields),
                "crm_id": record.get("id"),
            },
        )


def person_emails() -> EmailsById:
    """Person id → primary email, from `GET /api/v2/persons?ids=…` (100 ids a call)."""

    def fetch(client: ApiClient, ids: list[str]) -> dict[str, str | None]:
        body = client.request_json("GET", "/api/v2/persons", params={"ids": ",".join(ids), "limit": IDS_PER_LOOKUP})
        return {str(person.get("id")): primary_email(person) for person in dig(body, ("data",)) or []}

    return EmailsById(fetch, chunk=IDS_PER_LOOKUP)


class LinkedStream(ListStream):
    """Activities and deals: an activity for each person they are linked to, whose emails are looked up per page."""

    def __init__(self, name: str, *, page_size: int, types: dict[str, str], persons: EmailsById) -> None:
        super().__init__(name, page_size=page_size)
        self.types = types
        self.persons = persons

    def person_ids(self, record: Mapping[str, Any]) -> list[str]:
        ids = [str(p["person_id"]) for p in record.get("participants") or [] if p.get("person_id")]
        if not ids and record.get("person_id"):
            ids = [str(record["person_id"])]
        return list(dict.fromkeys(ids))

    def prepare(self, records: list[dict[str, Any]], client: ApiClient) -> None:
        self.persons.load([p for r in records for p in self.person_ids(r)], client)

    def event(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The record's event key (for activity_types) and its activity, less the person."""
        raise NotImplementedError

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        key, event = self.event(record)
        kind = activity_type(key, self.types)
        people = self.person_ids(record)
        for person_id in people or [""]:
            raw = {**event, "id": f"{event['id']}:{person_id}", "email": self.persons.emails.get(person_id)}
            yield activity(kind if people else None, **raw)  # with nobody to credit it to, it is skipped


class ActivitiesStream(LinkedStream):
    def __init__(self, *, page_size: int, types: dict[str, str], persons: EmailsById) -> None:
        super().__init__("activities", page_size=page_size, types=types, persons=persons)

    def event(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = f"activity:{record.get('type')}" if record.get("done") else "activity:planned"
        return key, {
            "id": f"activity:{record.get('id')}",
            "at": iso_or_raw(record.get("marked_as_done_time") or record.get("update_time")),
            "target": record.get("subject"),
            "properties": {k: v for k in ("type", "deal_id") if (v := record.get(k)) is not None},
        }


class DealsStream(LinkedStream):
    def __init__(self, *, page_size: int, types: dict[str, str], persons: EmailsById) -> None:
        super().__init__("deals", page_size=page_size, types=types, persons=persons)

    def event(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        status = str(record.get("status") or "open")
        at = {"won": "won_time", "lost": "lost_time"}.get(status, "add_time")
        return f"deal:{status}", {
            # A deal's status changes are separate events: open, then won or lost.
            "id": f"deal:{record.get('id')}:{status}",
            "at": iso_or_raw(record.get(at) or record.get("update_time")),
            "target": record.get("title"),
            "properties": {k: v for k in ("value", "currency", "lost_reason") if (v := record.get(k)) is not None},
        }


def pipedrive_source(
    spec: PipedriveSource,
    *,
    token: str,
    acquire: Callable[[], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    plus_addressing: PlusAddressing = "keep",
) -> RestSource:
    client = ApiClient(
        source=spec.name,
        base_url=spec.base_url,
        auth=HeaderToken(token, header="x-api-token", scheme=None),
        classify=classify(spec.name),
        acquire=acquire,
        transport=transport,
        retry=retry,
    )
    types = merged(ACTIVITY_TYPES, spec.activity_types)
    persons = person_emails()
    streams: list[RestStream] = []
    for name in spec.streams:
        if name == "persons":
            fields = merged(PERSON_FIELDS, spec.fields)
            streams.append(PersonsStream(page_size=spec.page_size, fields=fields, persons=persons))
        elif name == "activities":
            streams.append(ActivitiesStream(page_size=spec.page_size, types=types, persons=persons))
        else:
            streams.append(DealsStream(page_size=spec.page_size, types=types, persons=persons))
    return RestSource(spec.name, client=client, streams=streams, start=spec.start_date, plus_addressing=plus_addressing)
