"""Salesforce: Lead, Contact, Task and CampaignMember through SOQL over the REST API.

`GET /services/data/vXX.X/query?q=SELECT … WHERE SystemModstamp >= … ORDER BY SystemModstamp`,
then `nextRecordsUrl` until `done`; the batch size is asked for with `Sforce-Query-Options`.
Leads and contacts are lead profiles; tasks (with a Lead or Contact as `Who`) and responded
campaign members are activities.

Auth is an OAuth access token as a Bearer token, or the OAuth client credentials flow (a
connected app's client id and secret), which fetches a token and fetches a new one when
Salesforce answers 401 `INVALID_SESSION_ID`. Errors come as a JSON list of
`{"message", "errorCode"}`: `REQUEST_LIMIT_EXCEEDED` (403) is retried when it is the concurrent
request limit and fatal when it is the org's daily allowance.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import APIError, AuthenticationError, FatalAPIError, RetriableAPIError
from leadflow.connectors.http import ApiClient, HeaderToken, classify_status, failed
from leadflow.connectors.paginators import NextUrlPaginator, PageRequest, Paginator, dig
from leadflow.connectors.status import parse_retry_after
from leadflow.connectors.streams import (
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
from leadflow.leads.config.sources import SalesforceSource
from leadflow.leads.ingest.records import PlusAddressing

# leadflow profile field -> Salesforce Lead field: what the source reads and the handoff sink writes.
LEAD_FIELDS = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "company": "Company",
    "title": "Title",
    "industry": "Industry",
    "company_size": "NumberOfEmployees",
    "country": "Country",
}
PROFILE_DEFAULTS = {
    "Lead": LEAD_FIELDS,
    "Contact": {
        "first_name": "FirstName",
        "last_name": "LastName",
        "company": "Account.Name",
        "title": "Title",
        "industry": "Account.Industry",
        "company_size": "Account.NumberOfEmployees",
        "country": "MailingCountry",
    },
}
ACTIVITY_TYPES = {
    # Tasks by TaskSubtype (else Type): a logged call is contact with sales;
    # sales' own emails and to-dos are not the lead's behaviour.
    "Task:Call": "contact_sales",
    "Task:Email": "ignore",
    "Task:ListEmail": "ignore",
    "Task:Cadence": "ignore",
    "Task:LinkedIn": "ignore",
    "Task:Task": "ignore",
    # Campaign members who responded, by the campaign's Type.
    "CampaignMember:Webinar": "webinar",
    "CampaignMember:Email": "email_click",
    "CampaignMember:Advertisement": "ad_click",
    "CampaignMember:Banner Ads": "ad_click",
    **dict.fromkeys(
        [
            "CampaignMember:Conference",
            "CampaignMember:Trade Show",
            "CampaignMember:Direct Mail",
            "CampaignMember:Telemarketing",
            "CampaignMember:Public Relations",
            "CampaignMember:Partners",
            "CampaignMember:Referral Program",
            "CampaignMember:Other",
            "CampaignMember:not_responded",
        ],
        "ignore",
    ),
}


def classify(source: str) -> Callable[[httpx.Response], APIError | None]:
    def read(response: httpx.Response) -> APIError | None:
        if not failed(response):
            return None
        message, code = _first_error(response)
        if code == "REQUEST_LIMIT_EXCEEDED":
            if "concurrent" in message.lower():
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                return RetriableAPIError(
                    source, message, status=response.status_code, code=code, retry_after=retry_after
                )
            return FatalAPIError(
                source, f"the org's API request allowance is used up: {message}", status=response.status_code, code=code
            )
        if code in ("invalid_client", "invalid_grant", "unauthorized_client", "invalid_client_id"):
            return AuthenticationError(source, f"the credentials were refused: {message}", status=response.status_code,
                                       code=code)  # fmt: skip
        return classify_status(source, response, message=message, code=code)

    return read


def _first_error(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = None
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else body
    if isinstance(first, dict):
        message = first.get("message") or first.get("error_description") or response.reason_phrase
        code = first.get("errorCode") or first.get("error")
        return str(message), str(code) if code else None
    return response.reason_phrase or "request failed", None


class ClientCredentials(httpx.Auth):
    """The OAuth client credentials flow: a token from `/services/oauth2/token`, fetched again on a 401."""

    requires_response_body = True

    def __init__(self, client_id: str, client_secret: str, token_url: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._token: str | None = None

    def __repr__(self) -> str:
        return "ClientCredentials(client_id=***, client_secret=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None and not (yield from self._fetch_token()):
            return  # the token endpoint's refusal is the answer (classified as refused credentials)
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            if not (yield from self._fetch_token()):
                return
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _fetch_token(self) -> Generator[httpx.Request, httpx.Response, bool]:
        """Ask for a token; False (the refusal being the last response) when none was given."""
        response = yield httpx.Request(
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        try:
            token = response.json().get("access_token") if response.status_code == 200 else None
        except ValueError:
            token = None
        if not token:
            return False
        self._token = str(token)
        return True


def soql_time(moment: datetime) -> str:
    """A SOQL dateTime literal, to the second (earlier rather than later: repeats are harmless)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SoqlStream(RestStream):
    """One object, queried by SystemModstamp in ascending order."""

    fields: tuple[str, ...]
    where: str = ""

    def __init__(self, name: str, *, api_version: str) -> None:
        self.name = name
        self.api_version = api_version

    def select(self) -> list[str]:
        return ["Id", "SystemModstamp", *self.fields]

    def first_request(self, since: datetime | None) -> PageRequest:
        conditions = [c for c in (self.where, f"SystemModstamp >= {soql_time(since)}" if since else "") if c]
        query = f"SELECT {', '.join(dict.fromkeys(self.select()))} FROM {self.name}"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY SystemModstamp ASC"
        return PageRequest(url=f"/services/data/{self.api_version}/query", params={"q": query})

    def paginator(self) -> Paginator:
        return NextUrlPaginator()

    def records(self, body: Any) -> list[dict[str, Any]]:
        return list(dig(body, ("records",)) or [])

    def replication_value(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_moment(record.get("SystemModstamp"))

    def record_id(self, record: Mapping[str, Any]) -> str:
        return str(record.get("Id", "?"))


class PersonStream(SoqlStream):
    """Lead or Contact: who the lead is."""

    def __init__(self, name: str, *, api_version: str, fields: dict[str, str]) -> None:
        super().__init__(name, api_version=api_version)
        self.profile_fields = fields
        self.fields = ("Email", *fields.values())

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        yield (
            "profile",
            {
                "id": f"{self.name}:{record.get('Id')}",
                "email": record.get("Email"),
                "lead": profile_from(record, self.profile_fields),
                "crm_id": record.get("Id"),
            },
        )


class TaskStream(SoqlStream):
    fields = ("Subject", "TaskSubtype", "Type", "Status", "CreatedDate", "CompletedDateTime", "Who.Email")
    where = "WhoId != null"

    def __init__(self, *, api_version: str, types: dict[str, str]) -> None:
        super().__init__("Task", api_version=api_version)
        self.types = types

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        yield activity(
            activity_type(f"Task:{record.get('TaskSubtype') or record.get('Type') or 'Task'}", self.types),
            id=f"Task:{record.get('Id')}",
            email=pick(record, "Who.Email"),
            at=iso_or_raw(record.get("CompletedDateTime") or record.get("CreatedDate")),
            target=record.get("Subject"),
            properties={k: v for k in ("Type", "Status") if (v := record.get(k))},
        )


class CampaignMemberStream(SoqlStream):
    fields = ("Email", "Status", "HasResponded", "FirstRespondedDate", "CreatedDate", "Campaign.Name", "Campaign.Type")

    def __init__(self, *, api_version: str, types: dict[str, str]) -> None:
        super().__init__("CampaignMember", api_version=api_version)
        self.types = types

    def map(self, record: dict[str, Any]) -> Iterable[Mapped]:
        responded = bool(record.get("HasResponded"))
        key = (
            f"CampaignMember:{pick(record, 'Campaign.Type') or 'Other'}"
            if responded
            else "CampaignMember:not_responded"
        )
        yield activity(
            activity_type(key, self.types),
            id=f"CampaignMember:{record.get('Id')}",
            email=record.get("Email"),
            at=iso_or_raw(record.get("FirstRespondedDate") or record.get("CreatedDate")),
            target=pick(record, "Campaign.Name"),
            properties={k: v for k in ("Status",) if (v := record.get(k))},
        )


def salesforce_auth(
    base_url: str, *, token: str | None, client_id: str | None, client_secret: str | None, owner: str
) -> httpx.Auth:
    """A connected app's client credentials when both are given, else the access token; `owner`
    ("source 'crm'", "destination 'crm'") names who lacks both in the error."""
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret, f"{base_url}/services/oauth2/token")
    if token:
        return HeaderToken(token)
    raise ValueError(f"{owner}: no Salesforce access token or client credentials")


def salesforce_source(
    spec: SalesforceSource,
    *,
    token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    acquire: Callable[[], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    plus_addressing: PlusAddressing = "keep",
) -> RestSource:
    base_url = spec.base_url.rstrip("/")
    auth = salesforce_auth(
        base_url, token=token, client_id=client_id, client_secret=client_secret, owner=f"source {spec.name!r}"
    )
    client = ApiClient(
        source=spec.name,
        base_url=base_url,
        auth=auth,
        classify=classify(spec.name),
        acquire=acquire,
        transport=transport,
        retry=retry,
        headers={"Sforce-Query-Options": f"batchSize={spec.page_size}"},
    )
    types = merged(ACTIVITY_TYPES, spec.activity_types)
    streams: list[RestStream] = []
    for name in spec.streams:
        if name in ("Lead", "Contact"):
            fields = merged(PROFILE_DEFAULTS[name], spec.fields.get(name, {}))
            streams.append(PersonStream(name, api_version=spec.api_version, fields=fields))
        elif name == "Task":
            streams.append(TaskStream(api_version=spec.api_version, types=types))
        else:
            streams.append(CampaignMemberStream(api_version=spec.api_version, types=types))
    return RestSource(spec.name, client=client, streams=streams, start=spec.start_date, plus_addressing=plus_addressing)
