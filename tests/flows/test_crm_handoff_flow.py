"""The handoff flow to a folder and three CRMs at once (loopback fakes), through Prefect, on SQLite and
PostgreSQL: every SQL lands once in each, a re-run delivers nothing, CRM calls take rate-limit slots,
and a CRM that refuses its token stops alone and catches up once the token is fixed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from leadflow.flows.handoff import HandoffFailed, handoff_flow
from leadflow.flows.params import HandoffParams
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import HandoffOutbox, Lead, OutboxStatus, Stage
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.pipedrive import FakePipedrive
from tests.fakes.salesforce import FakeSalesforce
from tests.flows.test_ingest_vendors import active_slots, create_rate_limit
from tests.flows.test_pipeline import END, make_workspace, run

pytestmark = pytest.mark.usefixtures("prefect_harness")

HUBSPOT_TOKEN = "pat-na1-handoff-flow"
SALESFORCE_TOKEN = "00Dxx0000001gPL!handoff.flow"
PIPEDRIVE_TOKEN = "pipedrive-handoff-flow"
REP = "005xx000001Sv6eAAC"
LIMITS = {"hubspot": "leadflow-hubspot-handoff-test", "salesforce": "leadflow-salesforce-handoff-test",
          "pipedrive": "leadflow-pipedrive-handoff-test"}  # fmt: skip
Crms = tuple[FakeHubSpot, FakeSalesforce, FakePipedrive]


@pytest.fixture
def crms() -> Iterator[Crms]:
    with (
        FakeHubSpot(token=HUBSPOT_TOKEN) as hubspot,
        FakeSalesforce(token=SALESFORCE_TOKEN) as salesforce,
        FakePipedrive(token=PIPEDRIVE_TOKEN) as pipedrive,
    ):
        yield hubspot, salesforce, pipedrive


def crm_workspace(folder: Path, db_url: str, crms: Crms, *, hubspot_token: str = HUBSPOT_TOKEN) -> Path:
    hubspot, salesforce, pipedrive = crms
    folder = make_workspace(
        folder,
        db_url,
        leads=200,
        extra_env=f"HUBSPOT_TOKEN={hubspot_token}\nSALESFORCE_ACCESS_TOKEN={SALESFORCE_TOKEN}\n"
        f"PIPEDRIVE_API_TOKEN={PIPEDRIVE_TOKEN}\n",
    )
    config = folder / "leadflow.yaml"
    destinations = f"""handoff:
  destinations:
    - kind: file
      path: handoff-inbox
    - name: hubspot
      kind: hubspot
      base_url: {hubspot.url}
      default_owner_id: "501"
      rate_limit: {LIMITS["hubspot"]}
    - name: salesforce
      kind: salesforce
      base_url: {salesforce.url}
      default_owner_id: {REP}
      rate_limit: {LIMITS["salesforce"]}
    - name: pipedrive
      kind: pipedrive
      base_url: {pipedrive.url}
      default_owner_id: "7"
      rate_limit: {LIMITS["pipedrive"]}
"""
    text = config.read_text(encoding="utf-8")
    assert "handoff:\n  destination: file://handoff-inbox\n" in text
    config.write_text(text.replace("handoff:\n  destination: file://handoff-inbox\n", destinations), encoding="utf-8")
    return folder


def sql_leads(db_url: str) -> list[Lead]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Lead).where(Lead.stage == Stage.sql.value)).all())
    finally:
        engine.dispose()


def test_every_sql_reaches_every_destination_once_and_a_rerun_delivers_nothing(
    tmp_path: Path, db_url: str, crms: Crms
) -> None:
    hubspot, salesforce, pipedrive = crms
    for name in LIMITS.values():
        create_rate_limit(name)
    folder = crm_workspace(tmp_path / "ws", db_url, crms)

    first = run(folder).handoff

    sqls = len(sql_leads(db_url))
    assert sqls > 0
    assert {name: (c.queued, c.delivered, c.error) for name, c in first.destinations.items()} == {
        name: (sqls, sqls, None) for name in ("file", "hubspot", "salesforce", "pipedrive")
    }
    assert first.delivered == 4 * sqls
    assert len(list((folder / "handoff-inbox").glob("*.json"))) == sqls
    assert len(hubspot.objects["contacts"]) == len(hubspot.objects["tasks"]) == sqls
    assert {c["properties"]["lifecyclestage"] for c in hubspot.objects["contacts"]} == {"salesqualifiedlead"}
    assert {t["properties"]["hubspot_owner_id"] for t in hubspot.objects["tasks"]} == {"501"}
    assert len(salesforce.records["Lead"]) == len(salesforce.records["Task"]) == sqls
    assert {r["OwnerId"] for r in salesforce.records["Lead"]} == {REP}
    assert len(pipedrive.data["persons"]) == len(pipedrive.leads) == len(pipedrive.data["activities"]) == sqls
    # Each CRM's id for the lead is stored on it, under the destination's name.
    for lead in sql_leads(db_url):
        assert set(lead.crm_ids) == {"hubspot", "salesforce", "pipedrive"}
    # Every CRM call took a slot of the vendor's Prefect rate limit first.
    assert active_slots(LIMITS["hubspot"]) == len(hubspot.calls)
    assert active_slots(LIMITS["salesforce"]) == len(salesforce.calls)
    assert active_slots(LIMITS["pipedrive"]) == len(pipedrive.calls)

    calls = (len(hubspot.calls), len(salesforce.calls), len(pipedrive.calls))
    second = run(folder).handoff
    assert (second.queued, second.delivered) == (0, 0)
    assert (len(hubspot.calls), len(salesforce.calls), len(pipedrive.calls)) == calls


def test_a_crm_that_refuses_its_token_stops_alone_and_catches_up_when_it_is_fixed(
    tmp_path: Path, sqlite_url: str, crms: Crms
) -> None:
    from prefect.blocks.system import Secret

    hubspot, salesforce, pipedrive = crms
    folder = crm_workspace(tmp_path / "ws", sqlite_url, crms, hubspot_token="pat-na1-revoked")
    # Pipedrive's token from a Prefect Secret block instead of the environment.
    Secret(value=PIPEDRIVE_TOKEN).save("leadflow-handoff-test-pipedrive", overwrite=True)
    env, config = folder / ".env", folder / "leadflow.yaml"
    env.write_text(env.read_text().replace(f"PIPEDRIVE_API_TOKEN={PIPEDRIVE_TOKEN}\n", ""))
    config.write_text(config.read_text().replace('default_owner_id: "7"', 'default_owner_id: "7"\n'
                                                 "      token_block: leadflow-handoff-test-pipedrive"))  # fmt: skip

    with pytest.raises(HandoffFailed) as caught:
        run(folder)
    assert "'hubspot'" in str(caught.value) and "pat-na1-revoked" not in str(caught.value)
    sqls = len(sql_leads(sqlite_url))
    assert len(salesforce.records["Lead"]) == len(pipedrive.leads) == sqls > 0
    assert not hubspot.objects["contacts"]
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        by_status = dict(
            conn.execute(
                select(HandoffOutbox.status, func.count())
                .where(HandoffOutbox.destination == "hubspot")
                .group_by(HandoffOutbox.status)
            ).all()
        )
    engine.dispose()
    assert OutboxStatus.dead.value not in by_status and sum(by_status.values()) == sqls  # still queued

    env.write_text(env.read_text().replace("pat-na1-revoked", HUBSPOT_TOKEN))
    later = handoff_flow(HandoffParams(workspace=str(folder), as_of=END + timedelta(hours=1)))
    assert later.destinations["hubspot"].delivered == sqls and later.delivered == sqls
    assert len(hubspot.objects["contacts"]) == len(hubspot.objects["tasks"]) == sqls
