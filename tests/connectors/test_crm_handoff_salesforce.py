"""Salesforce as a handoff destination, against the loopback fake of its REST API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import MemoryLedger, reference
from leadflow.connectors.crm_handoff.salesforce import SalesforceSink
from leadflow.connectors.errors import CredentialsRefused, FatalHandoffError, QuotaExhausted
from leadflow.leads.config.handoff import SalesforceDestination
from tests.connectors.handoff_payloads import Sleeps, owner, payload
from tests.fakes.salesforce import FakeSalesforce, concurrent_limit, daily_limit, unavailable

TOKEN = "00Dxx0000001gPL!AR8AQ.handoff"
KEY = "handoff:17:salesforce"
REP = "005xx000001Sv6eAAC"
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(token=TOKEN, client=("client-id", "client-secret")) as server:
        yield server


def sink(
    fake: FakeSalesforce, ledger: MemoryLedger | None = None, *, attempts: int = 4, credentials: Any = None, **spec: Any
) -> SalesforceSink:
    config = SalesforceDestination.model_validate(
        {"name": "salesforce", "kind": "salesforce", "base_url": fake.url, **spec}
    )
    auth = {"client_id": credentials[0], "client_secret": credentials[1]} if credentials else {"token": TOKEN}
    retry = RetryPolicy(attempts=attempts, sleep=Sleeps())
    return SalesforceSink(config, ledger=ledger or MemoryLedger(), retry=retry, **auth)


def creates(fake: FakeSalesforce, name: str) -> int:
    return sum(1 for c in fake.calls if c.method == "POST" and c.path.endswith(f"/sobjects/{name}"))


def test_a_new_sql_becomes_a_lead_with_status_and_owner_and_a_task_for_the_owner(fake: FakeSalesforce) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger, lead_status="Working - Contacted", lead_source="leadflow") as salesforce:
        done = salesforce.deliver(idempotency_key=KEY, payload=payload(owner=owner(salesforce=REP)))

    [lead] = fake.records["Lead"]
    assert (lead["Email"], lead["FirstName"], lead["LastName"], lead["Company"], lead["NumberOfEmployees"]) == (
        "anna.jansen@acme-logistics.nl", "Anna", "Jansen", "Acme Logistics", 250
    )  # fmt: skip
    assert (lead["Status"], lead["OwnerId"], lead["LeadSource"]) == ("Working - Contacted", REP, "leadflow")
    [task] = fake.records["Task"]
    assert (task["WhoId"], task["OwnerId"], task["Status"], task["Priority"]) == (
        lead["Id"],
        REP,
        "Not Started",
        "High",
    )
    assert task["Subject"] == f"New SQL: Anna Jansen (Acme Logistics) [{reference(KEY)}]"
    assert "hand raise: demo_request" in task["Description"] and "mql → sql" in task["Description"]
    assert done == f"Lead {lead['Id']}, Task {task['Id']}"
    assert ledger.lead_crm_id("anna.jansen@acme-logistics.nl", "salesforce") == lead["Id"]


def test_required_fields_get_salesforces_placeholder_and_an_existing_lead_is_updated_not_duplicated(
    fake: FakeSalesforce,
) -> None:
    with sink(fake) as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload("x@y.example", first_name=None, last_name=None,
                                                                company=None))  # fmt: skip
    [lead] = fake.records["Lead"]
    assert (lead["LastName"], lead["Company"]) == ("[not provided]", "[not provided]")

    fake.add("Lead", "00Qxx0000000OLDAAA", T0, Email="anna.jansen@acme-logistics.nl", LastName="Jansen",
             Company="Acme", IsConverted=False, CreatedDate="2026-09-01T09:00:00.000+0000", Status="Open")  # fmt: skip
    with sink(fake) as salesforce:
        salesforce.deliver(idempotency_key=KEY + "b", payload=payload(last_name=None))
    assert creates(fake, "Lead") == 1
    old = fake.record("Lead", "00Qxx0000000OLDAAA")
    assert old is not None and (old["Status"], old["LastName"], old["FirstName"]) == (
        "Open - Not Contacted", "Jansen", "Anna"
    )  # fmt: skip
    assert fake.records["Task"][-1]["WhoId"] == "00Qxx0000000OLDAAA"


def test_delivering_again_creates_nothing_new_even_when_the_ledger_was_lost(fake: FakeSalesforce) -> None:
    ledger = MemoryLedger()
    with sink(fake, ledger) as salesforce:
        first = salesforce.deliver(idempotency_key=KEY, payload=payload())
        again = salesforce.deliver(idempotency_key=KEY, payload=payload())
    with sink(fake) as forgetful:  # found by SOQL on Email, and the Task by WhoId and Subject
        lost = forgetful.deliver(idempotency_key=KEY, payload=payload())
    assert first == again == lost
    assert (len(fake.records["Lead"]), len(fake.records["Task"])) == (1, 1)


def test_upsert_by_an_external_id_field(fake: FakeSalesforce) -> None:
    with sink(fake, external_id_field="Leadflow_Email__c") as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload())
    with sink(fake, external_id_field="Leadflow_Email__c") as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload(title="CMO"))
    [lead] = fake.records["Lead"]
    assert (lead["Leadflow_Email__c"], lead["Title"]) == ("anna.jansen@acme-logistics.nl", "CMO")
    upserts = [c for c in fake.calls if c.method == "PATCH" and "/Leadflow_Email__c/" in c.path]
    assert len(upserts) == 1 and creates(fake, "Lead") == 0 and len(fake.records["Task"]) == 1


def test_a_lead_whose_answer_was_lost_is_found_again_not_created_twice(fake: FakeSalesforce) -> None:
    fake.fail("/services/data/v61.0/sobjects/Lead", nth=1, method="POST", after=True, reply=unavailable(1))
    fake.fail("/services/data/v61.0/sobjects/Task", nth=1, method="POST", after=True, reply=unavailable(1))
    with sink(fake) as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload())
    assert (len(fake.records["Lead"]), len(fake.records["Task"])) == (1, 1)
    assert creates(fake, "Lead") == 1 and creates(fake, "Task") == 1


def test_request_limits_the_concurrent_one_is_retried_the_daily_one_is_not(fake: FakeSalesforce) -> None:
    fake.fail("/services/data/v61.0/query", nth=1, reply=concurrent_limit())
    with sink(fake) as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload())
        assert len(salesforce.retry.sleep) == 1  # type: ignore[arg-type]
    # The daily allowance stops the destination for this run; its handoffs stay queued for the next.
    fake.fail("/services/data/v61.0/query", nth=1, reply=daily_limit())
    with sink(fake) as salesforce, pytest.raises(QuotaExhausted) as caught:
        salesforce.deliver(idempotency_key="handoff:18:salesforce", payload=payload("bo@acme.example"))
    assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value) and "allowance" in str(caught.value)


def test_client_credentials_a_new_token_after_expiry_and_refused_credentials(fake: FakeSalesforce) -> None:
    with sink(fake, credentials=("client-id", "client-secret")) as salesforce:
        salesforce.deliver(idempotency_key=KEY, payload=payload())
        fake.expire(fake.issued[0])
        salesforce.deliver(idempotency_key="handoff:18:salesforce", payload=payload("bo@acme.example"))
    assert len(fake.issued) == 2 and len(fake.records["Lead"]) == 2

    with sink(fake, credentials=("client-id", "wrong-secret")) as salesforce, pytest.raises(CredentialsRefused) as c:
        salesforce.deliver(idempotency_key="handoff:19:salesforce", payload=payload("cy@acme.example"))
    assert "invalid client credentials" in str(c.value)
    assert "wrong-secret" not in str(c.value) and len(fake.records["Lead"]) == 2


def test_an_owner_that_is_not_a_user_fails_this_handoff_with_salesforces_reason(fake: FakeSalesforce) -> None:
    with sink(fake) as salesforce, pytest.raises(FatalHandoffError) as caught:
        salesforce.deliver(idempotency_key=KEY, payload=payload(owner=owner(salesforce="005000000000BAD")))
    assert "FIELD_INTEGRITY_EXCEPTION" in str(caught.value) and not fake.records["Lead"]


def test_a_converted_lead_is_not_written_to_and_an_ambiguous_external_id_is_refused(fake: FakeSalesforce) -> None:
    fake.add("Lead", "00Qxx0000000CNVAAA", T0, Email="anna.jansen@acme-logistics.nl", LastName="Jansen",
             Company="Acme", IsConverted=True, CreatedDate="2026-09-01T09:00:00.000+0000")  # fmt: skip
    ledger = MemoryLedger()
    ledger.save_lead_crm_id("anna.jansen@acme-logistics.nl", "salesforce", "00Qxx0000000CNVAAA")  # read by ingest
    with sink(fake, ledger) as salesforce:
        done = salesforce.deliver(idempotency_key=KEY, payload=payload())
    converted, new = fake.records["Lead"]
    assert "Status" not in converted and done.startswith(f"Lead {new['Id']},")
    assert fake.records["Task"][0]["WhoId"] == new["Id"]

    for n in (1, 2):
        fake.add("Lead", f"00Qxx000000DUP{n}AAA", T0, Email="bo@acme.example", LastName="Bo", Company="Acme",
                 Leadflow_Email__c="bo@acme.example")  # fmt: skip
    with sink(fake, external_id_field="Leadflow_Email__c") as salesforce, pytest.raises(FatalHandoffError) as caught:
        salesforce.deliver(idempotency_key="handoff:18:salesforce", payload=payload("bo@acme.example"))
    assert "several Leads have Leadflow_Email__c = bo@acme.example" in str(caught.value)


def test_a_person_who_is_already_a_contact_gets_the_task_not_a_duplicate_lead(fake: FakeSalesforce) -> None:
    """Anna's Lead was converted: she is a Contact now. Sales see the SQL on her Contact, not on a new Lead."""
    account_rep = "005xx000001Sv7fAAC"
    fake.add("Lead", "00Qxx0000000CNVAAA", T0, Email="anna.jansen@acme-logistics.nl", LastName="Jansen",
             Company="Acme", IsConverted=True, CreatedDate="2026-08-01T09:00:00.000+0000")  # fmt: skip
    fake.add("Contact", "003xx0000000ANNAAA", T0, Email="anna.jansen@acme-logistics.nl", LastName="Jansen",
             OwnerId=account_rep, CreatedDate="2026-08-02T09:00:00.000+0000")  # fmt: skip
    ledger = MemoryLedger()
    with sink(fake, ledger) as salesforce:  # no owner for this SQL in Salesforce: the Contact's owner takes it
        done = salesforce.deliver(idempotency_key=KEY, payload=payload())
        again = salesforce.deliver(idempotency_key=KEY, payload=payload())
    [task] = fake.records["Task"]
    assert done == again == f"Contact 003xx0000000ANNAAA, Task {task['Id']}"
    assert (task["WhoId"], task["OwnerId"]) == ("003xx0000000ANNAAA", account_rep)
    assert creates(fake, "Lead") == 0 and len(fake.records["Lead"]) == 1
    assert ledger.lead_crm_id("anna.jansen@acme-logistics.nl", "salesforce") == "003xx0000000ANNAAA"

    # With the SQL's own owner, and with an External ID field: still her Contact, the task for that owner.
    with sink(fake, MemoryLedger(), external_id_field="Leadflow_Email__c") as salesforce:
        done = salesforce.deliver(idempotency_key="handoff:18:salesforce", payload=payload(owner=owner(salesforce=REP)))
    assert done.startswith("Contact 003xx0000000ANNAAA,") and fake.records["Task"][-1]["OwnerId"] == REP
    assert creates(fake, "Lead") == 0 and not any("/Leadflow_Email__c/" in c.path and c.method == "PATCH"
                                                  for c in fake.calls)  # fmt: skip

    # An open Lead for the same email still comes first (the existing behaviour): it is updated.
    fake.add("Lead", "00Qxx0000000OPNAAA", T0, Email="anna.jansen@acme-logistics.nl", LastName="Jansen",
             Company="Acme", IsConverted=False, CreatedDate="2026-09-01T09:00:00.000+0000")  # fmt: skip
    with sink(fake) as salesforce:
        done = salesforce.deliver(idempotency_key="handoff:19:salesforce", payload=payload())
    assert done.startswith("Lead 00Qxx0000000OPNAAA,")
