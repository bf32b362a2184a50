"""The database ledger of CRM deliveries, on SQLite and PostgreSQL: a delivery that fails halfway
resumes where it stopped, and the CRM's id for the lead lands in lead.crm_ids beside other ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.hubspot import HubSpotSink
from leadflow.connectors.errors import RetriableHandoffError
from leadflow.handoff.crm_ledger import DatabaseLedger
from leadflow.leads.config.handoff import HubSpotDestination
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import HandoffCrmRecord, Lead
from tests import factories as make
from tests.connectors.handoff_payloads import Sleeps, payload
from tests.fakes.hubspot import FakeHubSpot, throttled

TOKEN = "pat-na1-ledger-test"
EMAIL = "anna.jansen@acme-logistics.nl"


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as server:
        yield server


def test_the_ledger_keeps_the_first_id_per_step_and_merges_crm_ids(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make.lead(EMAIL, crm_ids={"crm": "101"}))
    ledger = DatabaseLedger(engine)
    assert ledger.recall("handoff:1:hubspot", "contact") is None
    ledger.remember("handoff:1:hubspot", "contact", "9001")
    ledger.remember("handoff:1:hubspot", "contact", "9002")  # a second answer never replaces the first
    assert ledger.recall("handoff:1:hubspot", "contact") == "9001"
    assert ledger.recall("handoff:2:hubspot", "contact") is None

    ledger.save_lead_crm_id(EMAIL, "hubspot", "9001")
    ledger.save_lead_crm_id("nobody@acme.example", "hubspot", "1")  # no such lead: nothing to do
    assert ledger.lead_crm_id(EMAIL, "hubspot") == "9001" and ledger.lead_crm_id(EMAIL, "crm") == "101"
    with session_scope(engine) as session:
        assert session.execute(select(Lead.crm_ids)).scalar_one() == {"crm": "101", "hubspot": "9001"}


def test_a_delivery_that_failed_after_the_contact_resumes_without_looking_for_it_again(
    engine: Engine, fake: FakeHubSpot
) -> None:
    with session_scope(engine) as session:
        session.add(make.lead(EMAIL))
    spec = HubSpotDestination(name="hubspot", kind="hubspot", base_url=fake.url)
    for n in range(1, 3):
        fake.fail("/crm/v3/objects/tasks", nth=n, reply=throttled(retry_after=30))
    key = "handoff:5:hubspot"
    with HubSpotSink(spec, token=TOKEN, ledger=DatabaseLedger(engine), retry=RetryPolicy(attempts=1)) as sink:
        with pytest.raises(RetriableHandoffError):
            sink.deliver(idempotency_key=key, payload=payload(EMAIL))
    assert len(fake.objects["contacts"]) == 1 and not fake.objects["tasks"]
    searches = len(fake.calls_to("/crm/v3/objects/contacts/search"))

    with HubSpotSink(spec, token=TOKEN, ledger=DatabaseLedger(engine), retry=RetryPolicy(sleep=Sleeps())) as sink:
        sink.deliver(idempotency_key=key, payload=payload(EMAIL))
    assert (len(fake.objects["contacts"]), len(fake.objects["tasks"])) == (1, 1)
    assert len(fake.calls_to("/crm/v3/objects/contacts/search")) == searches  # known from the ledger
    contact_id = fake.objects["contacts"][0]["id"]
    with session_scope(engine) as session:
        steps = dict(session.execute(select(HandoffCrmRecord.step, HandoffCrmRecord.crm_id)).all())
        assert steps == {"contact": contact_id, "task": fake.objects["tasks"][0]["id"]}
        assert session.execute(select(Lead.crm_ids)).scalar_one() == {"hubspot": contact_id}
