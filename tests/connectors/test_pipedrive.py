"""Pipedrive against a loopback fake of its v2 API: cursors, 429s, revoked tokens, resuming after a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from leadflow.connectors.errors import AuthenticationError, FatalAPIError
from leadflow.connectors.pipedrive import pipedrive_source
from leadflow.connectors.sync import SyncTotals, sync_source
from leadflow.leads.config.sources import PipedriveSource
from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.cursors import load_cursor
from tests.connectors.vendor_checks import activity, leads, quarantine
from tests.fakes.pipedrive import FakePipedrive, failure, over_limit

TOKEN = "0123456789abcdef0123456789abcdef01234567"
NOW = datetime(2026, 10, 1, 12, 0)
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def fake() -> Iterator[FakePipedrive]:
    with FakePipedrive(token=TOKEN) as server:
        yield server


def sync(engine: Engine, fake: FakePipedrive, **overrides: Any) -> SyncTotals:
    spec = {"name": "pd", "kind": "pipedrive", "base_url": fake.url, "page_size": 2, **overrides}
    return sync_source(
        engine=engine, source=pipedrive_source(PipedriveSource.model_validate(spec), token=TOKEN), now=NOW
    )


def test_persons_activities_and_deals_are_read_and_mapped(engine: Engine, fake: FakePipedrive) -> None:
    fake.add_person(1, [("anna.old@acme.example", False), ("anna@acme.example", True)], minutes(1),
                    first_name="Anna", last_name="Jansen", job_title="CMO")  # fmt: skip
    fake.add_person(2, [], minutes(2), first_name="No Email")
    fake.add_person(3, [("bob@acme.example", True)], minutes(3), first_name="Bob")
    fake.add_activity(11, "call", minutes(10), done=True, person_id=1,
                      participants=[{"person_id": 1, "primary": True}, {"person_id": 3, "primary": False}])  # fmt: skip
    fake.add_activity(12, "meeting", minutes(11), done=False, person_id=1)
    fake.add_activity(13, "email", minutes(12), done=True, person_id=3)
    fake.add_activity(14, "demo", minutes(13), done=True, person_id=3)
    fake.add_activity(15, "task", minutes(14), done=True, person_id=None)
    fake.add_deal(21, "open", minutes(20), person_id=1)
    fake.add_deal(22, "won", minutes(21), person_id=3)
    fake.add_deal(23, "lost", minutes(22), person_id=1, lost_reason="Budget")
    fake.add_deal(24, "deleted", minutes(23), person_id=1)

    totals = sync(engine, fake)

    assert activity(engine) == [
        ("activity:11:1", "anna@acme.example", "contact_sales", datetime(2026, 9, 1, 9, 10)),
        ("activity:11:3", "bob@acme.example", "contact_sales", datetime(2026, 9, 1, 9, 10)),
        ("deal:21:open:1", "anna@acme.example", "sales_accepted", datetime(2026, 9, 1, 9, 20)),
        ("deal:22:won:3", "bob@acme.example", "deal_won", datetime(2026, 9, 1, 9, 21)),
        ("deal:23:lost:1", "anna@acme.example", "deal_lost", datetime(2026, 9, 1, 9, 22)),
    ]
    assert [(q.location, q.reason) for q in quarantine(engine)] == [
        ("persons:2", "bad_email"),
        ("activities:14", "unknown_type"),
    ]
    anna = leads(engine)["anna@acme.example"]
    assert (anna.first_name, anna.last_name, anna.title, anna.crm_ids) == ("Anna", "Jansen", "CMO", {"pd": "1"})
    assert totals.skipped == 4  # planned meeting, an email, a task with nobody, a deleted deal
    assert not [c for c in fake.calls_to("/api/v2/persons") if "ids" in c.query]  # the persons stream told us
    first = fake.calls_to("/api/v2/activities")[0].query
    assert (first["sort_by"], first["sort_direction"], first["limit"]) == ("update_time", "asc", "2")


def test_activities_without_the_persons_stream_look_their_persons_up(engine: Engine, fake: FakePipedrive) -> None:
    fake.add_person(1, [("anna@acme.example", True)], minutes(1))
    fake.add_person(3, [("bob@acme.example", True)], minutes(3))
    fake.add_activity(11, "call", minutes(10), done=True, person_id=1,
                      participants=[{"person_id": 1, "primary": True}, {"person_id": 3, "primary": False}])  # fmt: skip
    fake.add_activity(12, "meeting", minutes(11), done=True, person_id=3)
    fake.add_activity(13, "meeting", minutes(12), done=True, person_id=7)

    totals = sync(engine, fake, streams=["activities"])

    assert [row[:2] for row in activity(engine)] == [
        ("activity:11:1", "anna@acme.example"),
        ("activity:11:3", "bob@acme.example"),
        ("activity:12:3", "bob@acme.example"),
    ]
    lookups = [c.query["ids"] for c in fake.calls_to("/api/v2/persons")]
    assert lookups == ["1,3", "7"]  # once per person, a page at a time
    assert totals.reasons == {"bad_email": 1}  # person 7 is gone


def test_several_pages_and_a_429_midway_are_waited_out(engine: Engine, fake: FakePipedrive) -> None:
    for n in range(1, 6):
        fake.add_person(n, [(f"p{n}@example.com", True)], minutes(n))
    fake.fail("/api/v2/persons", nth=2, reply=over_limit(retry_after=1))

    started = time.monotonic()
    totals = sync(engine, fake, streams=["persons"])

    assert time.monotonic() - started >= 1.0
    assert sorted(leads(engine)) == [f"p{n}@example.com" for n in range(1, 6)]
    cursors = [c.query.get("cursor") for c in fake.calls_to("/api/v2/persons")]
    assert len(cursors) == 4 and cursors[1] == cursors[2] is not None
    assert totals.pages == 3


def test_a_revoked_token_stops_the_source_with_a_clear_error(engine: Engine, fake: FakePipedrive) -> None:
    fake.add_person(1, [("p1@example.com", True)], minutes(1))
    fake.revoke(TOKEN)

    with pytest.raises(AuthenticationError) as info:
        sync(engine, fake)

    assert "source 'pd'" in str(info.value) and "unauthorized access" in str(info.value)
    assert TOKEN not in str(info.value)
    assert leads(engine) == {} and len(fake.calls) == 1


def test_a_run_that_dies_on_page_3_resumes_where_it_stopped(engine: Engine, fake: FakePipedrive) -> None:
    for n in range(1, 8):
        fake.add_person(n, [(f"p{n}@example.com", True)], minutes(n))
        fake.add_deal(100 + n, "won", minutes(n), person_id=n)
    fake.fail("/api/v2/deals", nth=3, reply=failure(403, "You do not have permission to access deals"))
    with pytest.raises(FatalAPIError, match="source 'pd'.*permission"):
        sync(engine, fake, streams=["deals"])
    assert len(activity(engine)) == 4
    with session_scope(engine) as session:
        cursor = load_cursor(session, source="pd", stream="deals")
    assert cursor == {"since": None, "seen": "2026-09-01T09:04:00Z", "done": False}

    totals = sync(engine, fake, streams=["deals"])

    assert [row[0] for row in activity(engine)] == [f"deal:{100 + n}:won:{n}" for n in range(1, 8)]
    assert (totals.inserted, totals.duplicates) == (3, 1)
    assert fake.calls_to("/api/v2/deals")[-2].query["updated_since"] == "2026-09-01T09:04:00Z"
