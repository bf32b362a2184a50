"""HubSpot's CRM search: contacts and engagements (meetings, calls, emails, …) changed since the cursor.

`POST /crm/v3/objects/{object}/search`, filtered on the modification time and sorted by it, paged
with `paging.next.after`. A search returns at most 10,000 results, so past that the search starts
again from the last modification time seen. Engagements name their contacts through
`POST /crm/v4/associations/{object}/contacts/batch/read`, and the contacts' emails come from
`POST /crm/v3/objects/contacts/batch/read`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from leadflow.connectors.http import ApiClient
from leadflow.connectors.paginators import CursorPaginator, PageRequest, Paginator, dig
from leadflow.connectors.streams import (
    EmailsById,
    Mapped,
    RestStream,
    activity,
    activity_type,
    iso_or_raw,
    parse_moment,
    pick,
    profile_from,
)

__all__ = ["SEARCH_LIMIT", "ContactsStream", "EngagementStream", "contact_emails", "epoch_ms"]

SEARCH_LIMIT = 10_000  # results one search query can page through
BATCH_READ_LIMIT = 100

ENGAGEMENT_PROPERTIES = {
    "meetings": ["hs_meeting_title", "hs_meeting_outcome"],
    "calls": ["hs_call_title", "hs_call_direction", "hs_call_disposition"],
    "emails": ["hs_email_subject", "hs_email_direction"],
    "notes": [],
    "tasks": ["hs_task_subject", "hs_task_status"],
}
ENGAGEMENT_TITLES = {"meetings": "hs_meeting_title", "calls": "hs_call_title", "emails": "hs_email_subject"}


def epoch_ms(moment: datetime | None) -> str:
    """HubSpot's timestamps: milliseconds since the epoch, as text (\"0\": from the start)."""
    return str(int(moment.timestamp() * 1000)) if moment is not None else "0"


class SearchPaginator(CursorPaginator):
    """`paging.next.after` in the body; past the 10,000 results a search can reach, the search starts
    again from the last modification time seen (the records at that very time are read twice: harmless)."""

    def __init__(self, property_name: str, *, limit: int = SEARCH_LIMIT) -> None:
        super().__init__(("paging", "next", "after"), "after", in_body=True)
        self.property_name = property_name
        self.limit = limit
        self.last: datetime | None = None
        self.restarted_at: datetime | None = None

    def update_state(self, body: Any) -> None:
        super().update_state(body)
        for result in dig(body, ("results",)) or []:
            moment = parse_moment(pick(result, f"properties.{self.property_name}"))
            if moment is not None and (self.last is None or moment > self.last):
                self.last = moment

    def next_request(self, request: PageRequest) -> PageRequest:
        if self.cursor is not None and self.cursor.isdigit() and int(self.cursor) >= self.limit and self.last:
            # A new search from the last time seen; strictly after it if that time already filled a whole search.
            operator = "GT" if self.restarted_at == self.last else "GTE"
            self.restarted_at = self.last
            body = {k: v for k, v in (request.json or {}).items() if k != "after"}
            body["filterGroups"] = [
                {"filters": [{"propertyName": self.property_name, "operator": operator, "value": epoch_ms(self.last)}]}
            ]
            return PageRequest(url=request.url, method="POST", json=body)
        return super().next_request(request)


class SearchStream(RestStream):
    """A CRM search on one object, ordered by its last-modified property."""

    object_type: str
    property_name = "hs_lastmodifieddate"

    def __init__(self, *, page_size: int, search_limit: int = SEARCH_LIMIT) -> None:
        self.page_size = page_size
        self.search_limit = search_limit

    def properties(self) -> list[str]:
        raise NotImplementedError

    def first_request(self, since: datetime | None) -> PageRequest:
        filters = [{"propertyName": self.property_name, "operator": "GTE", "value": epoch_ms(since)}] if since else []
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": self.property_name, "direction": "ASCENDING"}],
            "properties": self.properties(),
            "limit": self.page_size,
        }
        return PageRequest(url=f"/crm/v3/objects/{self.object_type}/search", method="POST", json=body)

    def paginator(self) -> Paginator:
        return SearchPaginator(self.property_name, limit=self.search_limit)

    def records(self, body: Any) -> list[dict[str, Any]]:
        return list(dig(body, ("results",)) or [])

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_moment(pick(record, f"properties.{self.property_name}"))


class ContactsStream(SearchStream):
    name = "contacts"
    object_type = "contacts"
    property_name = "lastmodifieddate"

    def __init__(self, *, page_size: int, fields: dict[str, str], search_limit: int = SEARCH_LIMIT) -> None:
        super().__init__(page_size=page_size, search_limit=search_limit)
        self.fields = fields

    def properties(self) -> list[str]:
        return sorted({"email", self.property_name, *self.fields.values()})

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        properties = record.get("properties") or {}
        yield (
            "profile",
            {
                "id": f"contact:{record.get('id')}",
                "email": properties.get("email"),
                "lead": profile_from(properties, self.fields),
                "crm_id": record.get("id"),
            },
        )


class EngagementStream(SearchStream):
    """Meetings, calls, emails…: one activity per associated contact."""

    def __init__(
        self,
        object_type: str,
        *,
        page_size: int,
        types: dict[str, str],
        contacts: EmailsById,
        search_limit: int = SEARCH_LIMIT,
    ) -> None:
        super().__init__(page_size=page_size, search_limit=search_limit)
        self.object_type = object_type
        self.name = f"engagements:{object_type}"
        self.types = types
        self.contacts = contacts
        self.associated: dict[str, list[str]] = {}

    def properties(self) -> list[str]:
        return ["hs_timestamp", self.property_name, *ENGAGEMENT_PROPERTIES.get(self.object_type, [])]

    def prepare(self, records: list[dict[str, Any]], client: ApiClient) -> None:
        ids = [str(r.get("id")) for r in records if r.get("id") is not None]
        self.associated = {}
        for start in range(0, len(ids), BATCH_READ_LIMIT):
            body = client.request_json(
                "POST",
                f"/crm/v4/associations/{self.object_type}/contacts/batch/read",
                json={"inputs": [{"id": i} for i in ids[start : start + BATCH_READ_LIMIT]]},
            )
            for result in dig(body, ("results",)) or []:
                contact_ids = [str(t.get("toObjectId")) for t in result.get("to") or [] if t.get("toObjectId")]
                self.associated[str(dig(result, ("from", "id")))] = contact_ids
        self.contacts.load([c for cs in self.associated.values() for c in cs], client)

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        properties = record.get("properties") or {}
        key = self.object_type
        if self.object_type == "emails":
            key = f"emails:{properties.get('hs_email_direction') or 'EMAIL'}"
        kind = activity_type(key, self.types)
        contacts = self.associated.get(str(record.get("id")), [])
        if not contacts:
            kind = None  # nobody to credit it to (an internal meeting, say)
        extra = {k: v for k in ENGAGEMENT_PROPERTIES.get(self.object_type, []) if (v := properties.get(k))}
        for contact_id in contacts or [""]:
            yield activity(
                kind,
                id=f"{self.object_type}:{record.get('id')}:{contact_id}",
                email=self.contacts.emails.get(contact_id),
                at=iso_or_raw(properties.get("hs_timestamp")),
                target=properties.get(ENGAGEMENT_TITLES.get(self.object_type, "")),
                properties={"engagement": self.object_type, "engagement_id": record.get("id"), **extra},
            )


def contact_emails() -> EmailsById:
    """Contact id → email, from `POST /crm/v3/objects/contacts/batch/read` (100 ids a call)."""

    def fetch(client: ApiClient, ids: list[str]) -> dict[str, str | None]:
        body = client.request_json(
            "POST",
            "/crm/v3/objects/contacts/batch/read",
            json={"properties": ["email"], "inputs": [{"id": c} for c in ids]},
        )
        return {str(r.get("id")): pick(r, "properties.email") for r in dig(body, ("results",)) or []}

    return EmailsById(fetch, chunk=BATCH_READ_LIMIT)
