"""HubSpot: contacts, form submissions, engagements and marketing email events.

- contacts: `POST /crm/v3/objects/contacts/search`, filtered on `lastmodifieddate` and sorted by it,
  paged with `paging.next.after`; a search returns at most 10,000 results, so past that the
  search starts again from the last modification time seen. Contacts are lead profiles.
- form submissions: `GET /form-integrations/v1/submissions/forms/{guid}` per form (every form from
  `GET /marketing/v3/forms` unless the config names them), newest first, read back to the cursor.
- engagements: `POST /crm/v3/objects/{meetings,calls,emails,…}/search` on `hs_lastmodifieddate`;
  the contacts they are associated with come from `POST /crm/v4/associations/{object}/contacts/batch/read`
  and their emails from `POST /crm/v3/objects/contacts/batch/read`.
- email events: `GET /email/public/v1/events` from `startTimestamp`, paged with `hasMore`/`offset`.

Auth is a private app's access token (or an OAuth access token) as a Bearer token. Errors come as
`{"status": "error", "message": …, "category": …}`; 429s carry `policyName` and the
`X-HubSpot-RateLimit-*` headers; a `DAILY` limit is not waited out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import APIError, AuthenticationError, FatalAPIError, RetriableAPIError
from leadflow.connectors.http import ApiClient, HeaderToken, classify_status
from leadflow.connectors.paginators import CursorPaginator, HasMorePaginator, PageRequest, Paginator, dig
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
    pick,
    profile_from,
)
from leadflow.leads.config.sources import HubSpotSource
from leadflow.leads.ingest.records import PlusAddressing

SEARCH_LIMIT = 10_000  # results one search query can page through
BATCH_READ_LIMIT = 100

CONTACT_FIELDS = {
    "first_name": "firstname",
    "last_name": "lastname",
    "company": "company",
    "title": "jobtitle",
    "industry": "industry",
    "company_size": "numemployees",
    "country": "country",
    "timezone": "hs_timezone",
}
ACTIVITY_TYPES = {
    # email events
    "OPEN": "email_open",
    "CLICK": "email_click",
    "BOUNCE": "email_bounce",  # HubSpot's BOUNCE is permanent; temporary failures are DEFERRED
    "SPAMREPORT": "unsubscribe",
    "STATUSCHANGE:UNSUBSCRIBED": "unsubscribe",
    "STATUSCHANGE:SUBSCRIBED": "ignore",
    **dict.fromkeys(
        ["SENT", "PROCESSED", "DELIVERED", "DEFERRED", "DROPPED", "SUPPRESSED", "FORWARD", "PRINT", "UNBOUNCE"],
        "ignore",
    ),
    # form submissions
    "form_submission": "form_submit",
    # engagements: a meeting or call with the lead is contact with sales; an email only when the lead wrote it
    "meetings": "contact_sales",
    "calls": "contact_sales",
    "emails:INCOMING_EMAIL": "email_reply",
    "emails:EMAIL": "ignore",
    "emails:FORWARDED_EMAIL": "ignore",
    "notes": "ignore",
    "tasks": "ignore",
}
ENGAGEMENT_PROPERTIES = {
    "meetings": ["hs_meeting_title", "hs_meeting_outcome"],
    "calls": ["hs_call_title", "hs_call_direction", "hs_call_disposition"],
    "emails": ["hs_email_subject", "hs_email_direction"],
    "notes": [],
    "tasks": ["hs_task_subject", "hs_task_status"],
}
ENGAGEMENT_TITLES = {"meetings": "hs_meeting_title", "calls": "hs_call_title", "emails": "hs_email_subject"}


def classify(source: str) -> Callable[[httpx.Response], APIError | None]:
    def read(response: httpx.Response) -> APIError | None:
        if response.status_code < 400:
            return None
        body = _json(response)
        message = str(body.get("message") or response.reason_phrase or "request failed")
        code = body.get("category") or body.get("errorType")
        if response.status_code == 429:
            policy = str(body.get("policyName") or "")
            if policy == "DAILY":
                return FatalAPIError(
                    source, f"HubSpot's daily API limit is used up: {message}", status=429, code=policy
                )
            error = classify_status(source, response, message=message, code=policy or code)
            if isinstance(error, RetriableAPIError) and error.retry_after is None:
                interval = response.headers.get("x-hubspot-ratelimit-interval-milliseconds")
                if interval and interval.isdigit():
                    error.retry_after = min(int(interval) / 1000, 10.0)
            return error
        if response.status_code == 403 and code == "MISSING_SCOPES":
            return AuthenticationError(source, f"the token lacks a scope: {message}", status=403, code=code)
        return classify_status(source, response, message=message, code=code)

    return read


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _ms(moment: datetime | None) -> str:
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
                {"filters": [{"propertyName": self.property_name, "operator": operator, "value": _ms(self.last)}]}
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
        filters = [{"propertyName": self.property_name, "operator": "GTE", "value": _ms(since)}] if since else []
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


class FormSubmissionsStream(RestStream):
    """One form's submissions, newest first: read until the records are older than the cursor."""

    ordered = False
    newest_first = True

    def __init__(self, form_id: str, *, page_size: int, fields: dict[str, str], types: dict[str, str]) -> None:
        self.form_id = form_id
        self.name = f"form_submissions:{form_id}"
        self.page_size = min(page_size, 50)
        self.fields = fields
        self.types = types

    def first_request(self, since: datetime | None) -> PageRequest:
        return PageRequest(
            url=f"/form-integrations/v1/submissions/forms/{self.form_id}", params={"limit": self.page_size}
        )

    def paginator(self) -> Paginator:
        return CursorPaginator(("paging", "next", "after"), "after")

    def records(self, body: Any) -> list[dict[str, Any]]:
        return list(dig(body, ("results",)) or [])

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_moment(record.get("submittedAt"))

    def record_id(self, record: Mapping[str, Any]) -> str:
        return str(record.get("conversionId", "?"))

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        values = {str(v.get("name")): v.get("value") for v in record.get("values") or [] if isinstance(v, dict)}
        yield activity(
            activity_type("form_submission", self.types),
            id=f"form:{record.get('conversionId')}",
            email=values.get("email"),
            at=iso_or_raw(record.get("submittedAt")),
            target=record.get("pageUrl"),
            properties={"form_id": self.form_id},
            lead=profile_from(values, self.fields),
        )


class EmailEventsStream(RestStream):
    """Marketing email events (opens, clicks, bounces, unsubscribes) from a start time, in no promised order."""

    name = "email_events"
    ordered = False

    def __init__(self, *, page_size: int, types: dict[str, str]) -> None:
        self.page_size = min(page_size, 1000)
        self.types = types

    def first_request(self, since: datetime | None) -> PageRequest:
        params: dict[str, Any] = {"limit": self.page_size}
        if since is not None:
            params["startTimestamp"] = _ms(since)
        return PageRequest(url="/email/public/v1/events", params=params)

    def paginator(self) -> Paginator:
        return HasMorePaginator()

    def records(self, body: Any) -> list[dict[str, Any]]:
        return list(dig(body, ("events",)) or [])

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_moment(record.get("created"))

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        event = str(record.get("type") or "")
        key = (
            f"STATUSCHANGE:{record.get('portalSubscriptionStatus') or 'UNKNOWN'}" if event == "STATUSCHANGE" else event
        )
        campaign = record.get("emailCampaignId")
        yield activity(
            activity_type(key, self.types),
            id=f"email_event:{record.get('id')}",
            email=record.get("recipient"),
            at=iso_or_raw(record.get("created")),
            target=record.get("url") or (f"campaign:{campaign}" if campaign is not None else None),
            properties={
                k: record[k] for k in ("emailCampaignId", "subject", "url", "category", "appName") if record.get(k)
            },
        )


class HubSpotActivitySource(RestSource):
    """The streams of one HubSpot account; form streams are listed from the API when not configured."""

    def __init__(
        self, spec: HubSpotSource, *, client: ApiClient, plus_addressing: PlusAddressing, search_limit: int
    ) -> None:
        self.spec = spec
        self.search_limit = search_limit
        self.fields = merged(CONTACT_FIELDS, spec.fields)
        self.types = merged(ACTIVITY_TYPES, spec.activity_types)
        super().__init__(spec.name, client=client, streams=[], start=spec.start_date, plus_addressing=plus_addressing)

    def streams(self) -> list[RestStream]:
        spec, size = self.spec, self.spec.page_size
        streams: list[RestStream] = []
        if "contacts" in spec.streams:
            streams.append(ContactsStream(page_size=size, fields=self.fields, search_limit=self.search_limit))
        if "form_submissions" in spec.streams:
            for form_id in spec.forms or self.form_ids():
                streams.append(FormSubmissionsStream(form_id, page_size=size, fields=self.fields, types=self.types))
        if "engagements" in spec.streams:
            contacts = contact_emails()
            for object_type in spec.engagement_objects:
                streams.append(
                    EngagementStream(
                        object_type, page_size=size, types=self.types, contacts=contacts, search_limit=self.search_limit
                    )
                )
        if "email_events" in spec.streams:
            streams.append(EmailEventsStream(page_size=size, types=self.types))
        return streams

    def form_ids(self) -> list[str]:
        """Every form of the account (`GET /marketing/v3/forms`), in the order HubSpot lists them."""
        ids: list[str] = []
        request = PageRequest(url="/marketing/v3/forms", params={"limit": 100})
        paginator = CursorPaginator(("paging", "next", "after"), "after")
        while True:
            body = self.client.request_json(request.method, request.url, params=request.params)
            ids += [str(form["id"]) for form in dig(body, ("results",)) or [] if form.get("id")]
            paginator.update_state(body)
            if not paginator.has_next_page:
                return ids
            request = paginator.next_request(request)


def hubspot_source(
    spec: HubSpotSource,
    *,
    token: str,
    acquire: Callable[[], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    plus_addressing: PlusAddressing = "keep",
    search_limit: int = SEARCH_LIMIT,
) -> HubSpotActivitySource:
    client = ApiClient(
        source=spec.name,
        base_url=spec.base_url,
        auth=HeaderToken(token),
        classify=classify(spec.name),
        acquire=acquire,
        transport=transport,
        retry=retry,
    )
    return HubSpotActivitySource(spec, client=client, plus_addressing=plus_addressing, search_limit=search_limit)
