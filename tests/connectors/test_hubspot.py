"""HubSpot against a loopback fake of its API: paging, 429s, expired tokens, resuming after a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from leadflow.connectors.errors import AuthenticationError, FatalAPIError
from leadflow.connectors.hubspot import hubspot_source
from leadflow.connectors.streams import RestSource
from leadflow.connectors.sync import SyncTotals, sync_source
from leadflow.leads.config.sources import HubSpotSource
from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.cursors import load_cursor
from leadflow.leads.ingest.records import PlusAddressing
from tests.connectors.vendor_checks import activity, leads, quarantine
from tests.fakes.hubspot import FakeHubSpot, error, throttled

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
NOW = datetime(2026, 10, 1, 12, 0)
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as server:
        yield server


def source(fake: FakeHubSpot, plus_addressing: PlusAddressing = "keep", **overrides: Any) -> RestSource:
    spec: dict[str, Any] = {"name": "crm", "kind": "hubspot", "base_url": fake.url, "page_size": 3, **overrides}
    return hubspot_source(HubSpotSource.model_validate(spec), token=TOKEN, plus_addressing=plus_addressing)


def sync(engine: Engine, fake: FakeHubSpot, plus_addressing: PlusAddressing = "keep", **overrides: Any) -> SyncTotals:
    return sync_source(engine=engine, source=source(fake, plus_addressing, **overrides), now=NOW)


def seed_contacts(fake: FakeHubSpot, count: int = 7) -> None:
    for n in range(1, count + 1):
        fake.add_contact(100 + n, f"Contact{n}@Example.com", minutes(n), firstname=f"C{n}", jobtitle="CTO")


def test_every_stream_is_read_and_mapped_onto_leads_and_activity(engine: Engine, fake: FakeHubSpot) -> None:
    fake.add_contact(101, "anna@acme.example", minutes(1), firstname="Anna", jobtitle="Head of Marketing",
                     numemployees="25-50", country="Netherlands", hs_timezone="Europe/Amsterdam")  # fmt: skip
    fake.add_contact(102, None, minutes(2), firstname="No Email")
    fake.add_contact(103, "bob@acme.example", minutes(3), country="NL")
    fake.add_submission("f-1", "conv-1", minutes(10), {"email": "anna@acme.example", "company": "Acme"})
    fake.add_submission("f-1", "conv-2", minutes(11), {"email": "carol@acme.example", "firstname": "Carol"})
    fake.add_submission("f-1", "conv-3", datetime(2031, 1, 1, tzinfo=UTC), {"email": "dave@acme.example"})
    fake.add_engagement("meetings", 501, minutes(20), [101, 103], hs_meeting_title="Demo")
    fake.add_engagement(
        "emails", 601, minutes(21), [101], hs_email_direction="INCOMING_EMAIL", hs_email_subject="Re: x"
    )
    fake.add_engagement("emails", 602, minutes(22), [101], hs_email_direction="EMAIL", hs_email_subject="Hello")
    fake.add_engagement("meetings", 502, minutes(23), [], hs_meeting_title="Internal")
    fake.add_email_event("ev-open", "OPEN", "anna@acme.example", minutes(30))
    fake.add_email_event("ev-click", "CLICK", "bob@acme.example", minutes(31), url="https://acme.example/pricing")
    fake.add_email_event("ev-sent", "SENT", "bob@acme.example", minutes(32))
    fake.add_email_event("ev-bounce", "BOUNCE", "erin@acme.example", minutes(33), category="UNKNOWN_USER")
    fake.add_email_event("ev-unsub", "STATUSCHANGE", "bob@acme.example", minutes(34),
                         portalSubscriptionStatus="UNSUBSCRIBED", subscriptions=[])  # fmt: skip
    fake.add_email_event("ev-weird", "TELEPATHY", "bob@acme.example", minutes(35))

    totals = sync(engine, fake)

    assert activity(engine) == [
        ("email_event:ev-bounce", "erin@acme.example", "email_bounce", datetime(2026, 9, 1, 9, 33)),
        ("email_event:ev-click", "bob@acme.example", "email_click", datetime(2026, 9, 1, 9, 31)),
        ("email_event:ev-open", "anna@acme.example", "email_open", datetime(2026, 9, 1, 9, 30)),
        ("email_event:ev-unsub", "bob@acme.example", "unsubscribe", datetime(2026, 9, 1, 9, 34)),
        ("emails:601:101", "anna@acme.example", "email_reply", datetime(2026, 9, 1, 9, 21)),
        ("form:conv-1", "anna@acme.example", "form_submit", datetime(2026, 9, 1, 9, 10)),
        ("form:conv-2", "carol@acme.example", "form_submit", datetime(2026, 9, 1, 9, 11)),
        ("meetings:501:101", "anna@acme.example", "contact_sales", datetime(2026, 9, 1, 9, 20)),
        ("meetings:501:103", "bob@acme.example", "contact_sales", datetime(2026, 9, 1, 9, 20)),
    ]
    assert [(q.location, q.reason) for q in quarantine(engine)] == [
        ("contacts:102", "bad_email"),
        ("form_submissions:f-1:conv-3", "future_timestamp"),
        ("email_events:ev-weird", "unknown_type"),
    ]
    assert '"firstname": "No Email"' in quarantine(engine)[0].raw
    assert "TELEPATHY" in quarantine(engine)[2].detail
    people = leads(engine)
    anna = people["anna@acme.example"]
    # "25-50" employees keeps its first number; a country name is not a code, so it is left out.
    assert (anna.first_name, anna.title, anna.company_size, anna.country, anna.timezone, anna.company) == (
        "Anna", "Head of Marketing", 25, None, "Europe/Amsterdam", "Acme"
    )  # fmt: skip
    assert anna.crm_ids == {"crm": "101"}
    assert people["bob@acme.example"].country == "NL" and people["bob@acme.example"].unsubscribed_at is not None
    assert people["erin@acme.example"].bounced_at == datetime(2026, 9, 1, 9, 33)
    assert (totals.inserted, totals.quarantined, totals.skipped) == (9, 3, 3)  # SENT, an outgoing email, no contacts
    assert totals.reasons == {"bad_email": 1, "future_timestamp": 1, "unknown_type": 1}
    # The engagement's contacts and their emails came from the batch endpoints.
    assert fake.calls_to("/crm/v4/associations/meetings/contacts/batch/read")
    assert fake.calls_to("/crm/v3/objects/contacts/batch/read")


def test_several_pages_and_a_429_midway_are_waited_out(engine: Engine, fake: FakeHubSpot) -> None:
    seed_contacts(fake)
    fake.fail("/crm/v3/objects/contacts/search", nth=2, reply=throttled(retry_after=1))

    started = time.monotonic()
    totals = sync(engine, fake, streams=["contacts"])

    assert time.monotonic() - started >= 1.0
    assert sorted(leads(engine)) == [f"contact{n}@example.com" for n in range(1, 8)]
    searches = fake.calls_to("/crm/v3/objects/contacts/search")
    # Pages of 3: after=None, after=3 (throttled, then again), after=6.
    assert [c.body.get("after") for c in searches] == [None, "3", "3", "6"]
    assert totals.new_leads == 7 and totals.pages == 3


def test_an_expired_token_stops_the_source_with_a_clear_error(engine: Engine, fake: FakeHubSpot) -> None:
    seed_contacts(fake)
    fake.expire(TOKEN)

    with pytest.raises(AuthenticationError) as info:
        sync(engine, fake, streams=["contacts"])

    message = str(info.value)
    assert "source 'crm'" in message and "expired" in message and "EXPIRED_AUTHENTICATION" in message
    assert TOKEN not in message
    assert leads(engine) == {}
    assert len(fake.calls) == 1  # fatal: not retried


def test_a_contacts_run_that_dies_on_page_3_resumes_from_the_last_committed_change(
    engine: Engine, fake: FakeHubSpot
) -> None:
    seed_contacts(fake)
    fake.fail("/crm/v3/objects/contacts/search", nth=3, reply=error(400, "Something broke", "VALIDATION_ERROR"))
    with pytest.raises(FatalAPIError, match="source 'crm'.*Something broke"):
        sync(engine, fake, streams=["contacts"])
    assert len(leads(engine)) == 6
    with session_scope(engine) as session:
        cursor = load_cursor(session, source="crm", stream="contacts")
    assert cursor == {"since": None, "seen": "2026-09-01T09:06:00Z", "done": False}

    fake.add_contact(120, "late@example.com", minutes(30))
    fake.calls.clear()
    totals = sync(engine, fake, streams=["contacts"])

    assert sorted(leads(engine)) == sorted([*(f"contact{n}@example.com" for n in range(1, 8)), "late@example.com"])
    first = fake.calls_to("/crm/v3/objects/contacts/search")[0].body
    assert first["filterGroups"][0]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(int(minutes(6).timestamp() * 1000))}
    ]
    assert totals.new_leads == 2 and totals.profiles == 0  # contact6 again, unchanged
    with session_scope(engine) as session:
        assert load_cursor(session, source="crm", stream="contacts") == {
            "since": "2026-09-01T09:30:00Z",
            "seen": None,
            "done": True,
        }


def test_email_events_in_no_order_restart_from_the_run_start_after_a_crash(engine: Engine, fake: FakeHubSpot) -> None:
    for n in range(1, 8):
        fake.add_email_event(f"e{n}", "OPEN", f"lead{n}@example.com", minutes(n))
    fake.fail("/email/public/v1/events", nth=3, reply=error(403, "This app hasn't been granted all required scopes",
                                                            "MISSING_SCOPES"))  # fmt: skip
    with pytest.raises(AuthenticationError, match="lacks a scope"):
        sync(engine, fake, streams=["email_events"])
    assert len(activity(engine)) == 6  # newest first: e7..e2 committed, e1 not read

    totals = sync(engine, fake, streams=["email_events"])

    assert [row[0] for row in activity(engine)] == [f"email_event:e{n}" for n in range(1, 8)]
    assert (totals.inserted, totals.duplicates) == (1, 6)
    calls = fake.calls_to("/email/public/v1/events")
    assert "startTimestamp" not in calls[-1].query and "startTimestamp" not in calls[-3].query  # from the start again

    fake.add_email_event("e8", "CLICK", "lead8@example.com", minutes(60))
    totals = sync(engine, fake, streams=["email_events"])
    assert (totals.inserted, totals.duplicates) == (1, 1)  # e8, and e7 at the start time again
    assert fake.calls_to("/email/public/v1/events")[-1].query["startTimestamp"] == str(
        int(minutes(7).timestamp() * 1000)
    )


def test_form_submissions_come_newest_first_and_are_read_back_to_the_cursor(engine: Engine, fake: FakeHubSpot) -> None:
    for n in range(1, 6):
        fake.add_submission("f-9", f"c{n}", minutes(n), {"email": f"lead{n}@example.com"})
    assert sync(engine, fake, streams=["form_submissions"], page_size=2).inserted == 5
    assert [c.path for c in fake.calls][:1] == ["/marketing/v3/forms"]  # every form, listed from the API

    fake.add_submission("f-9", "c6", minutes(40), {"email": "lead6@example.com"})
    fake.calls.clear()
    totals = sync(engine, fake, streams=["form_submissions"], page_size=2)

    assert (totals.inserted, totals.duplicates) == (1, 1)  # c6, and c5 at the cursor's own time
    # Page 1 (c6, c5) and page 2, whose records are older than the cursor: reading stops there.
    assert len(fake.calls_to("/form-integrations/v1/submissions/forms/f-9")) == 2


def test_a_search_past_its_result_limit_starts_again_from_the_last_change_seen(engine: Engine) -> None:
    with FakeHubSpot(token=TOKEN, search_cap=4) as fake:
        seed_contacts(fake, 9)
        spec = HubSpotSource(name="crm", kind="hubspot", base_url=fake.url, page_size=2, streams=["contacts"])
        sync_source(engine=engine, source=hubspot_source(spec, token=TOKEN, search_limit=4), now=NOW)
        searches = fake.calls_to("/crm/v3/objects/contacts/search")

    assert sorted(leads(engine)) == [f"contact{n}@example.com" for n in range(1, 10)]
    assert all(int(c.body.get("after") or 0) < 4 for c in searches)
    restarts = [
        c.body["filterGroups"][0]["filters"][0]["value"]
        for c in searches
        if c.body.get("filterGroups") and "after" not in c.body
    ]
    assert restarts == [str(int(minutes(n).timestamp() * 1000)) for n in (4, 7)]


def test_activity_types_and_fields_can_be_remapped_in_the_config(engine: Engine, fake: FakeHubSpot) -> None:
    fake.add_contact(101, "anna+news@acme.example", minutes(1), jobtitle="CTO", hs_persona="persona_1")
    fake.add_email_event("ev-sent", "SENT", "anna@acme.example", minutes(2))
    fake.add_email_event("ev-open", "OPEN", "anna@acme.example", minutes(3))
    spec = {"streams": ["contacts", "email_events"], "fields": {"title": None, "need": "hs_persona"},
            "activity_types": {"SENT": "email_open", "OPEN": "ignore"}}  # fmt: skip
    totals = sync(engine, fake, "strip", **spec)

    assert [row[:3] for row in activity(engine)] == [("email_event:ev-sent", "anna@acme.example", "email_open")]
    anna = leads(engine)["anna@acme.example"]
    assert (anna.title, anna.need) == (None, "persona_1")
    assert totals.skipped == 1 and totals.new_leads == 1
