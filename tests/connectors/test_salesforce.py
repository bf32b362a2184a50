"""Salesforce against a loopback fake of its REST API: SOQL paging, limits, sessions, resuming after a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import AuthenticationError, FatalAPIError
from leadflow.connectors.salesforce import salesforce_source
from leadflow.connectors.sync import SyncTotals, sync_source
from leadflow.leads.config.sources import SalesforceSource
from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.cursors import load_cursor
from tests.connectors.vendor_checks import activity, leads, quarantine
from tests.fakes.salesforce import FakeSalesforce, concurrent_limit, daily_limit, errors, unavailable

TOKEN = "00Dxx0000001gPL!AR8AQ.test"
NOW = datetime(2026, 10, 1, 12, 0)
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
QUERY = "/services/data/v61.0/query"


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(token=TOKEN, max_batch=2) as server:
        yield server


def sync(engine: Engine, fake: FakeSalesforce, *, retry: RetryPolicy | None = None, **overrides: Any) -> SyncTotals:
    spec = SalesforceSource.model_validate({"name": "sf", "kind": "salesforce", "base_url": fake.url, **overrides})
    credentials: dict[str, Any] = {"token": TOKEN}
    if spec.client_id_env:
        credentials = {"client_id": "cid", "client_secret": "csecret"}
    return sync_source(engine=engine, source=salesforce_source(spec, **credentials, retry=retry), now=NOW)


def seed_leads(fake: FakeSalesforce, count: int = 5) -> None:
    for n in range(1, count + 1):
        fake.add("Lead", f"00Q{n:015d}", minutes(n), Email=f"lead{n}@example.com", LastName=f"L{n}", Company="Acme")


def test_leads_contacts_tasks_and_campaign_members_are_read_and_mapped(engine: Engine, fake: FakeSalesforce) -> None:
    fake.add("Lead", "00Q1", minutes(1), Email="Anna@Acme.example", FirstName="Anna", LastName="Jansen",
             Company="Acme Logistics", Title="CMO", NumberOfEmployees=250, Country="NL")  # fmt: skip
    fake.add("Lead", "00Q2", minutes(2), Email=None, LastName="Nobody", Company="?")
    account = {"Account.Name": "Acme B.V.", "Account.Industry": "logistics", "Account.NumberOfEmployees": 900}
    fake.add("Contact", "0031", minutes(3), Email="bob@acme.example", LastName="Bakker", Title="CTO", **account)
    fake.add("Task", "00T1", minutes(4), WhoId="00Q1", Subject="Call about pricing", TaskSubtype="Call",
             Type="Call", Status="Completed", CompletedDateTime="2026-09-01T10:00:00.000+0000",
             **{"Who.Email": "anna@acme.example"})  # fmt: skip
    fake.add("Task", "00T2", minutes(5), WhoId="0031", Subject="Intro", TaskSubtype="Email",
             CreatedDate="2026-09-01T10:05:00.000+0000", **{"Who.Email": "bob@acme.example"})  # fmt: skip
    fake.add("Task", "00T3", minutes(6), WhoId="0031", Subject="Demo", TaskSubtype="Demo",
             CreatedDate="2026-09-01T10:06:00.000+0000", **{"Who.Email": "bob@acme.example"})  # fmt: skip
    fake.add("Task", "00T4", minutes(7), WhoId=None, Subject="Account review", TaskSubtype="Task")
    fake.add("CampaignMember", "00v1", minutes(8), Email="anna@acme.example", HasResponded=True,
             FirstRespondedDate="2026-09-02", Status="Attended",
             **{"Campaign.Name": "Autumn webinar", "Campaign.Type": "Webinar"})  # fmt: skip
    fake.add(
        "CampaignMember",
        "00v2",
        minutes(9),
        Email="bob@acme.example",
        HasResponded=False,
        Status="Sent",
        CreatedDate="2026-09-01T09:00:00.000+0000",
        **{"Campaign.Name": "Newsletter", "Campaign.Type": "Email"},
    )

    totals = sync(engine, fake)

    assert activity(engine) == [
        ("CampaignMember:00v1", "anna@acme.example", "webinar", datetime(2026, 9, 2, 0, 0)),
        ("Task:00T1", "anna@acme.example", "contact_sales", datetime(2026, 9, 1, 10, 0)),
    ]
    assert [(q.location, q.reason) for q in quarantine(engine)] == [
        ("Lead:00Q2", "bad_email"),
        ("Task:00T3", "unknown_type"),
    ]
    assert "'Task:Demo'" in quarantine(engine)[1].detail
    people = leads(engine)
    anna, bob = people["anna@acme.example"], people["bob@acme.example"]
    assert (anna.first_name, anna.company, anna.title, anna.company_size, anna.country) == (
        "Anna", "Acme Logistics", "CMO", 250, "NL"
    )  # fmt: skip
    assert (bob.company, bob.industry, bob.company_size) == ("Acme B.V.", "logistics", 900)
    assert (anna.crm_ids, bob.crm_ids) == ({"sf": "00Q1"}, {"sf": "0031"})
    assert (totals.skipped, totals.quarantined) == (2, 2)  # a sales email, a member who did not respond
    queries = [c.query["q"] for c in fake.calls_to(QUERY) if "q" in c.query]
    assert queries[2] == (
        "SELECT Id, SystemModstamp, Subject, TaskSubtype, Type, Status, CreatedDate, CompletedDateTime, Who.Email "
        "FROM Task WHERE WhoId != null ORDER BY SystemModstamp ASC"
    )
    assert fake.calls[0].headers["sforce-query-options"] == "batchSize=2000"


def test_several_pages_through_query_locators_and_a_throttle_midway(engine: Engine, fake: FakeSalesforce) -> None:
    """Salesforce answers an overloaded moment with 503 and Retry-After (it has no 429): waited out."""
    seed_leads(fake)
    fake.fail(QUERY, nth=2, reply=unavailable(retry_after=1))

    started = time.monotonic()
    totals = sync(engine, fake, streams=["Lead"])

    assert time.monotonic() - started >= 1.0
    assert sorted(leads(engine)) == [f"lead{n}@example.com" for n in range(1, 6)]
    paths = [c.path for c in fake.calls_to(QUERY)]
    assert len(paths) == 4 and paths[1] == paths[2] and paths[1].startswith(QUERY + "/01gRO")
    assert totals.pages == 3


def test_the_concurrent_request_limit_is_retried_and_the_daily_one_is_not(engine: Engine, fake: FakeSalesforce) -> None:
    seed_leads(fake, 2)
    waits: list[float] = []
    fake.fail(QUERY, nth=1, reply=concurrent_limit())
    sync(engine, fake, streams=["Lead"], retry=RetryPolicy(sleep=waits.append))
    assert len(waits) == 1 and len(leads(engine)) == 2

    fake.fail(QUERY, nth=1, reply=daily_limit())
    with pytest.raises(FatalAPIError, match="source 'sf'.*allowance is used up.*REQUEST_LIMIT_EXCEEDED"):
        sync(engine, fake, streams=["Lead"], retry=RetryPolicy(sleep=waits.append))
    assert len(waits) == 1


def test_an_expired_session_stops_the_source_with_a_clear_error(engine: Engine, fake: FakeSalesforce) -> None:
    seed_leads(fake)
    fake.expire(TOKEN)

    with pytest.raises(AuthenticationError) as info:
        sync(engine, fake, streams=["Lead"])

    assert "source 'sf'" in str(info.value) and "INVALID_SESSION_ID" in str(info.value)
    assert TOKEN not in str(info.value)
    assert leads(engine) == {} and len(fake.calls) == 1


def test_client_credentials_fetch_a_new_token_when_the_session_expires(engine: Engine) -> None:
    with FakeSalesforce(token=None, client=("cid", "csecret"), max_batch=2) as fake:
        seed_leads(fake)
        fake.fail(QUERY, nth=2, reply=errors(401, "Session expired or invalid", "INVALID_SESSION_ID"))
        sync(engine, fake, streams=["Lead"], client_id_env="SF_ID", client_secret_env="SF_SECRET", token_env=None)
        token_calls = fake.calls_to("/services/oauth2/token")

    assert len(token_calls) == 2 and token_calls[0].body["grant_type"] == "client_credentials"
    assert sorted(leads(engine)) == [f"lead{n}@example.com" for n in range(1, 6)]


def test_a_run_that_dies_on_page_3_resumes_where_it_stopped(engine: Engine, fake: FakeSalesforce) -> None:
    for n in range(1, 8):
        fake.add("CampaignMember", f"00v{n}", minutes(n), Email=f"m{n}@example.com", HasResponded=True,
                 FirstRespondedDate="2026-09-01", **{"Campaign.Name": "W", "Campaign.Type": "Webinar"})  # fmt: skip
    fake.fail(QUERY, nth=3, reply=errors(400, "invalid query locator", "INVALID_QUERY_LOCATOR"))
    with pytest.raises(FatalAPIError, match="INVALID_QUERY_LOCATOR"):
        sync(engine, fake, streams=["CampaignMember"])
    assert len(activity(engine)) == 4
    with session_scope(engine) as session:
        assert load_cursor(session, source="sf", stream="CampaignMember") == {
            "since": None,
            "seen": "2026-09-01T09:04:00Z",
            "done": False,
        }

    totals = sync(engine, fake, streams=["CampaignMember"])

    assert [row[0] for row in activity(engine)] == [f"CampaignMember:00v{n}" for n in range(1, 8)]
    assert (totals.inserted, totals.duplicates) == (3, 1)  # the last committed one is read again, harmlessly
    assert (
        fake.calls_to(QUERY)[-2]
        .query["q"]
        .endswith("FROM CampaignMember WHERE SystemModstamp >= 2026-09-01T09:04:00Z ORDER BY SystemModstamp ASC")
    )
