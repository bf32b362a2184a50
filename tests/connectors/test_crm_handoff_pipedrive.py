"""Pipedrive as a handoff destination, against the loopback fake of its API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import MemoryLedger, reference
from leadflow.connectors.crm_handoff.pipedrive import SEARCH_LAG, PipedriveSink
from leadflow.connectors.errors import CredentialsRefused, FatalHandoffError, RetriableHandoffError
from leadflow.leads.config.handoff import PipedriveDestination
from tests.connectors.handoff_payloads import Sleeps, owner, payload
from tests.fakes.pipedrive import FakePipedrive, failure, over_limit

TOKEN = "pipedrive-handoff-test"
KEY = "handoff:17:pipedrive"
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakePipedrive]:
    with FakePipedrive(token=TOKEN) as server:
        yield server


def sink(
    fake: FakePipedrive, ledger: MemoryLedger | None = None, *, token: str = TOKEN, attempts: int = 4, **spec: Any
) -> PipedriveSink:
    config = PipedriveDestination.model_validate(
        {"name": "pipedrive", "kind": "pipedrive", "base_url": fake.url, **spec}
    )
    retry = RetryPolicy(attempts=attempts, sleep=Sleeps())
    return PipedriveSink(config, token=token, ledger=ledger or MemoryLedger(), retry=retry)


def posts(fake: FakePipedrive, path: str) -> int:
    return sum(1 for c in fake.calls if c.method == "POST" and c.path == path)


def test_a_new_sql_becomes_a_person_a_lead_and_an_activity_for_the_owner(fake: FakePipedrive) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger, label_ids=["f08d1c2e-hot"]) as pipedrive:
        done = pipedrive.deliver(idempotency_key=KEY, payload=payload(owner=owner(pipedrive="7")))

    [person] = fake.data["persons"]
    assert (person["name"], person["emails"][0]["value"], person["owner_id"]) == (
        "Anna Jansen", "anna.jansen@acme-logistics.nl", 7
    )  # fmt: skip
    [lead] = fake.leads
    assert (lead["person_id"], lead["owner_id"], lead["label_ids"]) == (person["id"], 7, ["f08d1c2e-hot"])
    assert lead["title"] == f"New SQL: Anna Jansen (Acme Logistics) [{reference(KEY)}]"
    [activity] = fake.data["activities"]
    assert (activity["owner_id"], activity["person_id"], activity["lead_id"], activity["type"]) == (
        7, person["id"], lead["id"], "task"
    )  # fmt: skip
    assert "hand raise: demo_request" in activity["note"]
    assert done == f"person {person['id']}, lead {lead['id']}, activity {activity['id']}"
    assert ledger.lead_crm_id("anna.jansen@acme-logistics.nl", "pipedrive") == str(person["id"])


def test_delivering_again_creates_nothing_new_even_when_the_ledger_was_lost(fake: FakePipedrive) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger) as pipedrive:
        first = pipedrive.deliver(idempotency_key=KEY, payload=payload())
        again = pipedrive.deliver(idempotency_key=KEY, payload=payload())
    with sink(fake) as forgetful:  # person found by email search, lead and activity by the reference
        lost = forgetful.deliver(idempotency_key=KEY, payload=payload())
    assert first == again == lost
    assert (len(fake.data["persons"]), len(fake.leads), len(fake.data["activities"])) == (1, 1, 1)


def test_an_existing_person_is_found_and_its_many_leads_are_paged_through(fake: FakePipedrive) -> None:
    fake.add_person(42, [("anna.jansen@acme-logistics.nl", True)], T0, name="Anna J.")
    with sink(fake) as pipedrive:
        pipedrive.deliver(idempotency_key=KEY, payload=payload())
    for n in range(150):  # older leads of the same person, listed before the handoff's own
        fake.leads.insert(0, {**fake.leads[-1], "id": f"old-{n}", "title": f"Old lead {n}"})
    with sink(fake) as forgetful:
        forgetful.deliver(idempotency_key=KEY, payload=payload())
    assert posts(fake, "/api/v2/persons") == 0 and posts(fake, "/api/v1/leads") == 1
    pages = [c for c in fake.calls if c.method == "GET" and c.path == "/api/v1/leads"]
    assert {c.query["start"] for c in pages} >= {"0", "100"}
    assert all(lead["person_id"] == 42 for lead in fake.leads)


def test_a_lead_whose_answer_was_lost_is_found_by_its_reference(fake: FakePipedrive) -> None:
    fake.fail("/api/v1/leads", nth=1, method="POST", after=True, reply=failure(502, "Bad gateway"))
    fake.fail("/api/v1/activities", nth=1, method="POST", after=True, reply=failure(503, "Service unavailable"))
    with sink(fake) as pipedrive:
        pipedrive.deliver(idempotency_key=KEY, payload=payload())
    assert (len(fake.leads), len(fake.data["activities"])) == (1, 1)


def test_a_deal_instead_of_a_lead(fake: FakePipedrive) -> None:
    with sink(fake, create="deal", activity_type="call") as pipedrive:
        done = pipedrive.deliver(idempotency_key=KEY, payload=payload())
    [deal] = fake.data["deals"]
    [activity] = fake.data["activities"]
    assert not fake.leads and activity["deal_id"] == deal["id"] and activity["type"] == "call"
    assert f"deal {deal['id']}" in done


def test_429_is_waited_out_and_a_persistent_one_is_retried_later(fake: FakePipedrive) -> None:
    fake.fail("/api/v2/persons/search", nth=1, reply=over_limit(2))
    with sink(fake) as pipedrive:
        pipedrive.deliver(idempotency_key=KEY, payload=payload())
        assert pipedrive.retry.sleep == pytest.approx([2.0], rel=0.11)  # type: ignore[comparison-overlap]
    fake.fail("/api/v2/persons/search", nth=1, reply=over_limit(5))
    with sink(fake, attempts=1) as pipedrive, pytest.raises(RetriableHandoffError) as caught:
        pipedrive.deliver(idempotency_key="handoff:18:pipedrive", payload=payload("bo@acme.example"))
    assert (caught.value.status, caught.value.retry_after) == (429, 5.0)


def test_a_revoked_token_stops_the_destination_and_a_bad_owner_fails_the_handoff(fake: FakePipedrive) -> None:
    with sink(fake, token="revoked-secret-token") as pipedrive, pytest.raises(CredentialsRefused) as refused:
        pipedrive.deliver(idempotency_key=KEY, payload=payload())
    assert "unauthorized access" in str(refused.value) and "revoked-secret-token" not in str(refused.value)
    with sink(fake) as pipedrive, pytest.raises(FatalHandoffError) as caught:
        pipedrive.deliver(idempotency_key=KEY, payload=payload(owner=owner(pipedrive="99")))
    assert "User 99 not found" in str(caught.value)


def test_a_person_whose_answer_was_lost_is_looked_for_once_search_has_caught_up(fake: FakePipedrive) -> None:
    """Pipedrive's search finds a new person only after a while, and allows two persons with one email."""
    sleeps = Sleeps()
    fake.search_lag, fake.clock = 6.0, lambda: sum(sleeps)  # time passes only as the sink waits
    fake.fail("/api/v2/persons", nth=1, method="POST", after=True, reply=failure(502, "Bad Gateway"))
    config = PipedriveDestination.model_validate({"name": "pipedrive", "kind": "pipedrive", "base_url": fake.url})
    with PipedriveSink(
        config, token=TOKEN, ledger=MemoryLedger(), retry=RetryPolicy(attempts=4, sleep=sleeps)
    ) as sink_:
        sink_.deliver(idempotency_key=KEY, payload=payload())
    assert len(fake.data["persons"]) == 1 and sum(1 for c in fake.calls if c.path == "/api/v2/persons") == 1
    assert max(sleeps) >= SEARCH_LAG  # not the usual one-second retry, which would have missed it
