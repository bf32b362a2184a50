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

The two CRM searches (contacts, engagements) are in connectors/hubspot_search.py.

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
from leadflow.connectors.http import ApiClient, HeaderToken, classify_status, failed
from leadflow.connectors.hubspot_search import (
    SEARCH_LIMIT,
    ContactsStream,
    EngagementStream,
    contact_emails,
    epoch_ms,
)
from leadflow.connectors.paginators import CursorPaginator, HasMorePaginator, PageRequest, Paginator, dig
from leadflow.connectors.streams import (
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
from leadflow.leads.config.sources import HubSpotSource
from leadflow.leads.ingest.records import PlusAddressing

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


def classify(source: str) -> Callable[[httpx.Response], APIError | None]:
    def read(response: httpx.Response) -> APIError | None:
        if not failed(response):
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
            params["startTimestamp"] = epoch_ms(since)
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
