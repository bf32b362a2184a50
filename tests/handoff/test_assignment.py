"""Owner assignment on SQLite and PostgreSQL: round robin, territories, capacity, fallback, the payload's owner."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.handoff.assignment import AssignReport, assign_new_sqls
from leadflow.handoff.outbox import queue_new_sqls
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import Lead, NotificationOutbox, Stage, TeamRotation
from tests import factories as make
from tests.handoff.helpers import OWNERS, T0, TEAMS, add_sql, assignments, config, outbox, owners_by_email


def run_queue(engine: Engine, cfg: WorkspaceConfig) -> tuple[AssignReport, int]:
    """What the handoff flow's first task does: owners, then handoff rows, in one transaction."""
    with session_scope(engine) as session:
        report = assign_new_sqls(session=session, config=cfg.handoff, now=T0)
        queued = queue_new_sqls(session=session, config=cfg, destination="file", now=T0)
    return report, queued


def test_round_robin_is_fair_and_carries_on_across_runs(engine: Engine) -> None:
    cfg = config()
    for n in range(4):
        add_sql(engine, f"l{n}@nl.example")
    first, queued = run_queue(engine, cfg)
    assert queued == 4 and first.assigned == Counter({"anna": 2, "bram": 1, "cleo": 1})
    for n in range(4, 7):
        add_sql(engine, f"l{n}@nl.example")
    second, _ = run_queue(engine, cfg)
    assert second.assigned == Counter({"bram": 1, "cleo": 1, "anna": 1})  # bram first: the pointer was kept

    owners = owners_by_email(engine)
    assert [owners[f"l{n}@nl.example"] for n in range(7)] == ["anna", "bram", "cleo", "anna", "bram", "cleo", "anna"]
    with Session(engine) as session:
        rotation = session.get(TeamRotation, "benelux")
        assert rotation is not None and (rotation.last_owner, rotation.assigned) == ("anna", 7)
        notes = list(session.execute(select(NotificationOutbox.recipient)).scalars())
    assert Counter(notes) == Counter({"owner:anna": 3, "owner:bram": 2, "owner:cleo": 2})

    payloads = {row.payload["lead"]["email"]: row.payload for row in outbox(engine)}
    assert payloads["l0@nl.example"]["owner"] == {
        "id": "anna",
        "name": "Anna de Vries",
        "email": "anna@acme.example",
        "crm_ids": {"hubspot": "901", "salesforce": None, "pipedrive": "7"},
    }
    assert payloads["l1@nl.example"]["owner"]["crm_ids"] == {"hubspot": None, "salesforce": None, "pipedrive": None}
    assert payloads["l1@nl.example"]["lead"]["owner"] == "bram"

    again, queued_again = run_queue(engine, cfg)
    assert (again.assigned, queued_again, len(assignments(engine)), len(outbox(engine))) == (Counter(), 0, 7, 7)


def test_territories_choose_the_team(engine: Engine) -> None:
    add_sql(engine, "nl@x.example", country="NL")
    add_sql(engine, "be@x.example", country="be")  # case does not matter
    add_sql(engine, "bank@x.example", country="US", industry="banking", size=5000)
    add_sql(engine, "smallbank@x.example", country="US", industry="Banking", size=50)
    add_sql(engine, "unknown@x.example", country=None, industry=None, size=None)
    report, _ = run_queue(engine, config())
    assert owners_by_email(engine) == {
        "nl@x.example": "anna",
        "be@x.example": "bram",
        "bank@x.example": "dana",
        "smallbank@x.example": "erik",
        "unknown@x.example": "erik",
    }
    assert {a.team for a in assignments(engine)} == {"benelux", "enterprise", "rest"}
    assert report.unassigned == 0


def test_a_lead_no_territory_takes_is_handed_off_without_owner(engine: Engine) -> None:
    cfg = config(teams=TEAMS[:2], owners=OWNERS[:4])
    add_sql(engine, "us@x.example", country="US")
    report, queued = run_queue(engine, cfg)
    assert report.unassigned == 1 and queued == 1
    [row] = outbox(engine)
    assert row.payload["owner"] is None and row.payload["lead"]["owner"] is None
    [assignment] = assignments(engine)
    assert assignment.owner_id is None and assignment.sla_due_at is None and "territory" in assignment.reason
    assert run_queue(engine, cfg) == (AssignReport(), 0)


def _capped(limit: int) -> list[dict[str, object]]:
    return [{**o, "max_open_sqls": limit} if o["id"] in ("anna", "bram", "cleo") else o for o in OWNERS]


def test_full_owners_are_skipped_and_leads_wait_when_all_are_full(engine: Engine) -> None:
    cfg = config(owners=_capped(1))
    with Session(engine) as session:  # anna already holds an SQL from before
        session.add(make.lead("old@x.example", stage=Stage.sql, owner="anna"))
        session.commit()
    for n in range(3):
        add_sql(engine, f"l{n}@nl.example")
    report, queued = run_queue(engine, cfg)
    assert report.assigned == Counter({"bram": 1, "cleo": 1}) and report.waiting == 1 and queued == 2
    assert owners_by_email(engine)["l2@nl.example"] is None
    assert {row.payload["lead"]["email"] for row in outbox(engine)} == {"l0@nl.example", "l1@nl.example"}

    # Still full: the lead keeps waiting, run after run, and is not handed off.
    report, queued = run_queue(engine, cfg)
    assert report.waiting == 1 and queued == 0

    # Anna's old SQL closes (won): she has room again and takes the waiting lead.
    with Session(engine) as session:
        session.execute(update(Lead).where(Lead.email == "old@x.example").values(stage=Stage.customer.value))
        session.commit()
    report, queued = run_queue(engine, cfg)
    assert report.assigned == Counter({"anna": 1}) and report.waiting == 0 and queued == 1
    assert owners_by_email(engine)["l2@nl.example"] == "anna"


def test_a_full_team_hands_leads_to_its_fallback(engine: Engine) -> None:
    teams = [{**TEAMS[0], "fallback": "erik"}, *TEAMS[1:]]
    cfg = config(owners=_capped(1), teams=teams)
    for n in range(5):
        add_sql(engine, f"l{n}@nl.example")
    report, queued = run_queue(engine, cfg)
    assert report.assigned == Counter({"anna": 1, "bram": 1, "cleo": 1, "erik": 2}) and queued == 5
    fallback = [a for a in assignments(engine) if a.owner_id == "erik"]
    assert all(a.team == "benelux" and "fallback" in a.reason for a in fallback)


def test_two_workers_share_one_rotation(postgres_url: str) -> None:
    """Two workers assigning at once on PostgreSQL: every lead once, the rotation stays fair."""
    setup = make_engine(postgres_url)
    upgrade(setup)
    for n in range(30):
        add_sql(setup, f"l{n}@nl.example")
    cfg = config()
    reports: list[AssignReport] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        engine = make_engine(postgres_url)
        try:
            barrier.wait()
            reports.append(run_queue(engine, cfg)[0])
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2  # both workers finished without error
    total = sum((r.assigned for r in reports), Counter())
    assert total == Counter({"anna": 10, "bram": 10, "cleo": 10})
    assert len(assignments(setup)) == 30 and len(outbox(setup)) == 30
    setup.dispose()


def test_sqls_handed_off_before_owners_were_configured_stay_as_they_were(engine: Engine) -> None:
    add_sql(engine, "old@nl.example")
    without_owners = config(owners=[], teams=[])
    assert run_queue(engine, without_owners) == (AssignReport(), 1)
    add_sql(engine, "new@nl.example")
    report, queued = run_queue(engine, config())
    assert report.assigned == Counter({"anna": 1}) and queued == 1
    assert owners_by_email(engine) == {"old@nl.example": None, "new@nl.example": "anna"}
    with Session(engine) as session:  # nobody is told about the old lead
        assert list(session.execute(select(NotificationOutbox.recipient)).scalars()) == ["owner:anna"]


def test_a_waiting_lead_that_leaves_sql_is_handed_off_without_owner(engine: Engine) -> None:
    cfg = config(owners=_capped(0))
    add_sql(engine, "waits@nl.example")
    assert run_queue(engine, cfg)[0].waiting == 1
    with Session(engine) as session:
        session.execute(update(Lead).values(stage=Stage.customer.value))
        session.commit()
    report, queued = run_queue(engine, cfg)
    assert (report.waiting, report.unassigned, queued) == (0, 1, 1)
    assert outbox(engine)[0].payload["owner"] is None
    assert "no longer an SQL" in assignments(engine)[0].reason
