"""The ingest flow over a workspace with a file and two CRMs on loopback fakes, through Prefect.

Counts per source and per quarantine reason in the report; a CRM that refuses its token stops
alone and fails the run after the others are stored; a Prefect rate limit takes a slot per call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from leadflow.cli.workspace_setup import init_workspace
from leadflow.flows.ingest import IngestFailed, ingest_flow
from leadflow.flows.params import IngestParams
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import Activity, Lead
from tests.factories import jsonl, raw_event
from tests.fakes.hubspot import FakeHubSpot, throttled
from tests.fakes.pipedrive import FakePipedrive

pytestmark = pytest.mark.usefixtures("prefect_harness")

HUBSPOT_TOKEN = "pat-na1-flow-test"
PIPEDRIVE_TOKEN = "pipedrive-flow-test"
AS_OF = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def crms() -> Iterator[tuple[FakeHubSpot, FakePipedrive]]:
    with FakeHubSpot(token=HUBSPOT_TOKEN) as hubspot, FakePipedrive(token=PIPEDRIVE_TOKEN) as pipedrive:
        yield hubspot, pipedrive


def workspace(folder: Path, db_url: str, hubspot: FakeHubSpot, pipedrive: FakePipedrive) -> Path:
    init_workspace(folder)
    config = folder / "leadflow.yaml"
    text = config.read_text(encoding="utf-8")
    start, end = text.index("sources:\n"), text.index("\n\n", text.index("sources:\n"))
    sources = f"""sources:
  - name: website
    kind: file
    path: data/activity.jsonl
  - name: crm
    kind: hubspot
    base_url: {hubspot.url}
    streams: [contacts, email_events]
    rate_limit: leadflow-hubspot-flow-test
    page_size: 2
  - name: pd
    kind: pipedrive
    base_url: {pipedrive.url}
    streams: [persons, deals]"""
    config.write_text(text[:start] + sources + text[end:], encoding="utf-8")
    with (folder / ".env").open("a", encoding="utf-8") as env:
        env.write(f"LEADFLOW_DATABASE_URL={db_url}\nPIPEDRIVE_API_TOKEN={PIPEDRIVE_TOKEN}\n")
    (folder / "data").mkdir()
    (folder / "data" / "activity.jsonl").write_text(
        jsonl(raw_event(1), raw_event(2, type="telepathy"), raw_event(3)) + '{"id": "x", "email": \n',
        encoding="utf-8",
    )
    return folder


def seed(hubspot: FakeHubSpot, pipedrive: FakePipedrive) -> None:
    for n in range(1, 6):
        hubspot.add_contact(n, f"contact{n}@acme.example", T0 + timedelta(minutes=n), firstname=f"C{n}")
    hubspot.add_contact(9, None, T0 + timedelta(minutes=9))
    hubspot.add_email_event("o1", "OPEN", "contact1@acme.example", T0 + timedelta(hours=1))
    hubspot.add_email_event("s1", "SENT", "contact1@acme.example", T0 + timedelta(hours=1))
    hubspot.add_email_event("x1", "PRINTED_ON_PAPER", "contact2@acme.example", T0 + timedelta(hours=2))
    hubspot.fail("/crm/v3/objects/contacts/search", nth=2, reply=throttled(retry_after=1))
    pipedrive.add_person(1, [("anna@acme.example", True)], T0, first_name="Anna")
    pipedrive.add_deal(7, "won", T0 + timedelta(days=1), person_id=1)


def create_rate_limit(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.delete_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            pass
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=1000, slot_decay_per_second=0.001)
        )


def active_slots(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


@pytest.fixture
def folder(
    tmp_path: Path, db_url: str, crms: tuple[FakeHubSpot, FakePipedrive], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A workspace whose CRMs hold data; the HubSpot token in the environment, Pipedrive's in the .env file."""
    seed(*crms)
    monkeypatch.setenv("HUBSPOT_TOKEN", HUBSPOT_TOKEN)
    return workspace(tmp_path / "ws", db_url, *crms)


def test_the_report_counts_per_source_and_per_quarantine_reason(
    folder: Path, db_url: str, crms: tuple[FakeHubSpot, FakePipedrive]
) -> None:
    hubspot, _ = crms
    create_rate_limit("leadflow-hubspot-flow-test")

    report = ingest_flow(IngestParams(workspace=str(folder), as_of=AS_OF))

    website, crm, pd = report.sources["website"], report.sources["crm"], report.sources["pd"]
    assert (website.kind, website.inserted, website.quarantined) == ("file", 2, 2)
    assert website.quarantine_by_reason == {"unknown_type": 1, "bad_json": 1}
    assert (crm.kind, crm.streams, crm.new_leads, crm.inserted, crm.skipped, crm.quarantined) == (
        "hubspot", 2, 5, 1, 1, 2
    )  # fmt: skip
    assert crm.quarantine_by_reason == {"bad_email": 1, "unknown_type": 1}
    assert (pd.kind, pd.new_leads, pd.inserted, pd.error) == ("pipedrive", 1, 1, None)
    assert report.quarantine_by_reason == {"unknown_type": 2, "bad_json": 1, "bad_email": 1}
    # The 429 midway was waited out; every HubSpot call took a slot of the Prefect rate limit.
    searches = hubspot.calls_to("/crm/v3/objects/contacts/search")
    assert len(searches) == 4 and searches[1].body == searches[2].body
    assert active_slots("leadflow-hubspot-flow-test") == len(hubspot.calls)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Lead)).scalar_one() == 2 + 5 + 1
        assert conn.execute(select(func.count()).select_from(Activity)).scalar_one() == 2 + 1 + 1
    engine.dispose()


def test_a_crm_that_refuses_its_token_stops_alone_and_fails_the_run(
    folder: Path, db_url: str, crms: tuple[FakeHubSpot, FakePipedrive]
) -> None:
    crms[1].revoke(PIPEDRIVE_TOKEN)

    with pytest.raises(IngestFailed, match=r"source 'pd'.*unauthorized access"):
        ingest_flow(IngestParams(workspace=str(folder), as_of=AS_OF))

    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Activity)).scalar_one() == 3  # file and HubSpot
    engine.dispose()
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": ["leadflow-ingest-quarantine"]}}, "sort": "CREATED_DESC", "limit": 1}
    latest = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body).json()[0]
    assert "Sources that stopped" in latest["data"] and "source 'pd'" in latest["data"]
    assert PIPEDRIVE_TOKEN not in json.dumps(latest)


def test_prefect_retries_a_source_only_for_retriable_failures() -> None:
    from prefect.states import Failed

    from leadflow.connectors.errors import AuthenticationError, RetriableAPIError
    from leadflow.flows.ingest import _retriable

    assert _retriable(None, None, Failed(data=RetriableAPIError("crm", "rate limited", status=429)))
    assert not _retriable(None, None, Failed(data=AuthenticationError("crm", "token expired", status=401)))
    assert not _retriable(None, None, Failed(data=FileNotFoundError("data/activity.jsonl")))
