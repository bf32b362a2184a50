"""HubSpot as a handoff destination, against the loopback fake of its CRM v3 API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import MemoryLedger, reference
from leadflow.connectors.crm_handoff.hubspot import SEARCH_LAG, HubSpotSink
from leadflow.connectors.errors import CredentialsRefused, FatalHandoffError, QuotaExhausted, RetriableHandoffError
from leadflow.leads.config.handoff import HubSpotDestination
from tests.connectors.handoff_payloads import Sleeps, owner, payload
from tests.fakes.base import Reply
from tests.fakes.hubspot import FakeHubSpot, throttled

TOKEN = "pat-na1-handoff-test"
KEY = "handoff:17:hubspot"


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as server:
        yield server


def sink(
    fake: FakeHubSpot, ledger: MemoryLedger | None = None, *, token: str = TOKEN, attempts: int = 4, **spec: Any
) -> HubSpotSink:
    config = HubSpotDestination.model_validate({"name": "hubspot", "kind": "hubspot", "base_url": fake.url, **spec})
    retry = RetryPolicy(attempts=attempts, sleep=Sleeps())
    return HubSpotSink(config, token=token, ledger=ledger or MemoryLedger(), retry=retry)


def posts(fake: FakeHubSpot, path: str) -> int:
    return sum(1 for c in fake.calls if c.method == "POST" and c.path == path)


def test_a_new_sql_becomes_a_contact_in_sql_stage_with_its_owner_and_a_task_with_the_reasons(
    fake: FakeHubSpot,
) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger) as hubspot:
        done = hubspot.deliver(idempotency_key=KEY, payload=payload(owner=owner(hubspot="501")))

    [contact] = fake.objects["contacts"]
    props = contact["properties"]
    assert (props["email"], props["firstname"], props["lastname"], props["company"], props["jobtitle"]) == (
        "anna.jansen@acme-logistics.nl", "Anna", "Jansen", "Acme Logistics", "Head of Marketing"
    )  # fmt: skip
    assert (props["lifecyclestage"], props["hubspot_owner_id"]) == ("salesqualifiedlead", "501")
    [task] = fake.objects["tasks"]
    body = task["properties"]
    assert body["hs_task_subject"] == f"New SQL: Anna Jansen (Acme Logistics) [{reference(KEY)}]"
    assert "hand raise: demo_request" in body["hs_task_body"] and "Pricing page +32" in body["hs_task_body"]
    assert (body["hubspot_owner_id"], body["hs_task_status"], body["hs_task_priority"]) == (
        "501",
        "NOT_STARTED",
        "HIGH",
    )
    assert fake.associations[("tasks", task["id"])] == [contact["id"]]
    assert done == f"contact {contact['id']}, task {task['id']}"
    # The contact's id is kept for the lead (lead.crm_ids[destination name] in the database).
    assert ledger.lead_crm_id("anna.jansen@acme-logistics.nl", "hubspot") == contact["id"]


def test_delivering_again_creates_nothing_new_even_when_the_ledger_was_lost(fake: FakeHubSpot) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger) as hubspot:
        first = hubspot.deliver(idempotency_key=KEY, payload=payload())
        again = hubspot.deliver(idempotency_key=KEY, payload=payload())
    with sink(fake) as forgetful:  # no record of what was created: found by email and by the reference
        lost = forgetful.deliver(idempotency_key=KEY, payload=payload())

    assert first == again == lost
    assert (len(fake.objects["contacts"]), len(fake.objects["tasks"])) == (1, 1)
    assert posts(fake, "/crm/v3/objects/contacts") == 1 and posts(fake, "/crm/v3/objects/tasks") == 1
    # A second SQL transition of the same lead is a new handoff: same contact, a second task.
    with sink(fake, ledger) as hubspot:
        hubspot.deliver(idempotency_key="handoff:99:hubspot", payload=payload())
    assert (len(fake.objects["contacts"]), len(fake.objects["tasks"])) == (1, 2)


def test_an_existing_customer_is_found_by_email_and_keeps_its_later_lifecycle_stage(fake: FakeHubSpot) -> None:
    fake.add_contact(777, "Anna.Jansen@acme-logistics.nl", datetime(2026, 9, 1, tzinfo=UTC), lifecyclestage="customer")
    with sink(fake, default_owner_id="502") as hubspot:
        hubspot.deliver(idempotency_key=KEY, payload=payload(owner=owner(salesforce="005xx000001Sv6eAAC")))

    assert posts(fake, "/crm/v3/objects/contacts") == 0
    [contact] = fake.objects["contacts"]
    # lifecyclestage only moves forward in HubSpot: a customer is not made an SQL again.
    assert contact["properties"]["lifecyclestage"] == "customer"
    # The owner has no HubSpot id, so the destination's default owner gets the SQL.
    assert contact["properties"]["hubspot_owner_id"] == "502"
    assert contact["properties"]["firstname"] == "Anna"
    assert fake.associations[("tasks", fake.objects["tasks"][0]["id"])] == ["777"]


def test_a_task_whose_answer_was_lost_is_found_by_its_reference_not_created_twice(fake: FakeHubSpot) -> None:
    # The second POST under /tasks: the first is the search for one made before.
    fake.fail("/crm/v3/objects/tasks", nth=2, method="POST", after=True,
              reply=Reply(502, {"status": "error", "message": "Bad Gateway", "category": "UNKNOWN"}))  # fmt: skip
    with sink(fake) as hubspot:
        done = hubspot.deliver(idempotency_key=KEY, payload=payload())

    assert len(fake.objects["tasks"]) == 1 and posts(fake, "/crm/v3/objects/tasks") == 1
    assert done.endswith(f"task {fake.objects['tasks'][0]['id']}")


def test_a_contact_created_meanwhile_answers_409_and_is_updated_instead(fake: FakeHubSpot) -> None:
    # The search misses it (HubSpot's search index lags behind writes); the create says who it is.
    fake.fail("/crm/v3/objects/contacts/search", nth=1, reply=Reply(200, {"total": 0, "results": []}))
    fake.add_contact(4242, "anna.jansen@acme-logistics.nl", datetime(2026, 9, 1, tzinfo=UTC))
    with sink(fake) as hubspot:
        done = hubspot.deliver(idempotency_key=KEY, payload=payload())
    assert done.startswith("contact 4242,")
    assert len(fake.objects["contacts"]) == 1
    assert fake.objects["contacts"][0]["properties"]["lifecyclestage"] == "salesqualifiedlead"


def test_a_429_is_waited_out_as_hubspot_asks_and_a_persistent_one_is_retried_later(fake: FakeHubSpot) -> None:
    fake.fail("/crm/v3/objects/contacts/search", nth=1, reply=throttled(retry_after=2))
    with sink(fake) as hubspot:
        hubspot.deliver(idempotency_key=KEY, payload=payload())
        assert hubspot.retry.sleep == pytest.approx([2.0], rel=0.11)  # type: ignore[comparison-overlap]

    for n in range(1, 4):
        fake.fail("/crm/v3/objects/notes", nth=n, reply=throttled(retry_after=3))
    with sink(fake, follow_up="note", attempts=1) as hubspot, pytest.raises(RetriableHandoffError) as caught:
        hubspot.deliver(idempotency_key="handoff:18:hubspot", payload=payload("bo@acme.example"))
    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)
    assert "ten_secondly_rolling" in str(caught.value)


def test_a_note_instead_of_a_task(fake: FakeHubSpot) -> None:
    with sink(fake, follow_up="note") as hubspot:
        hubspot.deliver(idempotency_key=KEY, payload=payload())
    [note] = fake.objects["notes"]
    assert reference(KEY) in note["properties"]["hs_note_body"] and not fake.objects["tasks"]
    assert fake.associations[("notes", note["id"])] == [fake.objects["contacts"][0]["id"]]


def test_an_expired_token_stops_the_destination_without_showing_the_token(fake: FakeHubSpot) -> None:
    with sink(fake, token="pat-na1-expired-secret") as hubspot, pytest.raises(CredentialsRefused) as caught:
        hubspot.deliver(idempotency_key=KEY, payload=payload())
    assert "expired" in str(caught.value) and "pat-na1-expired-secret" not in str(caught.value)
    assert not fake.objects["contacts"]


def test_an_unknown_owner_is_a_fatal_error_for_this_handoff(fake: FakeHubSpot) -> None:
    with sink(fake) as hubspot, pytest.raises(FatalHandoffError) as caught:
        hubspot.deliver(idempotency_key=KEY, payload=payload(owner=owner(hubspot="999")))
    assert "999 is not a valid owner id" in str(caught.value) and caught.value.status == 400


def test_the_daily_limit_stops_the_destination_for_this_run(fake: FakeHubSpot) -> None:
    daily = Reply(
        429,
        {"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
         "correlationId": "c0ffee", "policyName": "DAILY", "groupName": "publicapi:private-app:12345:678"},
        {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"},
    )  # fmt: skip
    fake.fail("/crm/v3/objects/contacts/search", nth=1, reply=daily)
    with sink(fake) as hubspot, pytest.raises(QuotaExhausted) as caught:
        hubspot.deliver(idempotency_key=KEY, payload=payload())
    assert "daily" in str(caught.value) and not fake.objects["contacts"]


def test_a_429_without_retry_after_waits_for_hubspots_rolling_window(fake: FakeHubSpot) -> None:
    reply = throttled()
    del reply.headers["Retry-After"]  # HubSpot often sends only X-HubSpot-RateLimit-Interval-Milliseconds
    fake.fail("/crm/v3/objects/contacts", nth=1, method="POST", reply=reply)
    with sink(fake) as hubspot:
        hubspot.deliver(idempotency_key=KEY, payload=payload())
        assert hubspot.retry.sleep == pytest.approx([10.0], rel=0.11)  # type: ignore[comparison-overlap]
    assert len(fake.objects["contacts"]) == 1


def test_a_task_whose_answer_was_lost_is_looked_for_once_search_has_caught_up(fake: FakeHubSpot) -> None:
    """HubSpot's search shows a new task only seconds later: looking again sooner would make a second one."""
    sleeps = Sleeps()
    fake.search_lag, fake.clock = 6.0, lambda: sum(sleeps)  # time passes only as the sink waits
    fake.fail("/crm/v3/objects/tasks", nth=2, method="POST", after=True,  # the create, after the first search
              reply=Reply(502, {"status": "error", "message": "Bad Gateway", "category": "UNKNOWN"}))  # fmt: skip
    config = HubSpotDestination.model_validate({"name": "hubspot", "kind": "hubspot", "base_url": fake.url})
    with HubSpotSink(config, token=TOKEN, ledger=MemoryLedger(), retry=RetryPolicy(attempts=4, sleep=sleeps)) as sink_:
        sink_.deliver(idempotency_key=KEY, payload=payload())
    assert len(fake.objects["tasks"]) == 1 and posts(fake, "/crm/v3/objects/tasks") == 1
    assert max(sleeps) >= SEARCH_LAG
