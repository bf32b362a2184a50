"""The SLA on SQLite and PostgreSQL: reassign to the next owner, then escalate; met by sales activity or delivery."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.handoff.sla import SlaReport, check_sla
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import (
    HandoffOutbox,
    Lead,
    NotificationOutbox,
    OutboxStatus,
    Stage,
    TeamRotation,
)
from tests import factories as make
from tests.handoff.helpers import OWNERS, T0, TEAMS, add_sql, assignments, config, outbox, owners_by_email
from tests.handoff.test_assignment import run_queue

MANAGER = "json://127.0.0.1:9/managers"


def sla_config(**sla: object) -> WorkspaceConfig:
    teams = [{**TEAMS[0], "manager": MANAGER}, *TEAMS[1:]]
    return config(teams=teams, sla={"hours": 24, **sla})


def check(engine: Engine, cfg: WorkspaceConfig, hours: float) -> SlaReport:
    with session_scope(engine) as session:
        return check_sla(session=session, config=cfg.handoff, now=T0 + timedelta(hours=hours))


def notifications(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(NotificationOutbox.kind, NotificationOutbox.recipient).order_by(NotificationOutbox.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


def test_a_missed_sla_reassigns_once_then_escalates(engine: Engine) -> None:
    cfg = sla_config()
    add_sql(engine, "lead@nl.example")
    run_queue(engine, cfg)
    assert owners_by_email(engine)["lead@nl.example"] == "anna"
    assert assignments(engine)[0].sla_due_at == T0 + timedelta(hours=24)

    assert check(engine, cfg, 23) == SlaReport()
    report = check(engine, cfg, 25)
    assert report.reassigned == Counter({"bram": 1}) and not report.escalated
    assert owners_by_email(engine)["lead@nl.example"] == "bram"
    first, second = assignments(engine)
    assert (first.status, first.owner_id, second.status, second.owner_id, second.seq) == (
        "reassigned", "anna", "active", "bram", 1,
    )  # fmt: skip
    assert "missed by anna" in second.reason and second.sla_due_at == T0 + timedelta(hours=49)
    original, again = outbox(engine)
    assert again.idempotency_key == original.idempotency_key + ":r1"
    assert again.payload["event"] == "lead.reassigned"
    assert again.payload["owner"]["id"] == "bram" and again.payload["previous_owner"]["id"] == "anna"
    assert again.payload["lead"]["owner"] == "bram" and again.payload["reason"] == original.payload["reason"]
    assert notifications(engine) == [("assigned", "owner:anna"), ("assigned", "owner:bram")]

    assert check(engine, cfg, 25) == SlaReport()  # the same run again settles nothing twice
    report = check(engine, cfg, 50)
    assert report.escalated == Counter({"benelux": 1}) and not report.reassigned
    assert [a.status for a in assignments(engine)] == ["reassigned", "escalated"]
    assert owners_by_email(engine)["lead@nl.example"] == "bram"  # bram keeps it; the manager is told
    assert notifications(engine)[-1] == ("escalated", "manager:benelux")
    assert check(engine, cfg, 100) == SlaReport() and len(notifications(engine)) == 3 and len(outbox(engine)) == 2


def test_sales_activity_in_time_meets_the_sla(engine: Engine) -> None:
    cfg = sla_config()
    add_sql(engine, "quick@nl.example")
    add_sql(engine, "slow@nl.example")
    add_sql(engine, "early@nl.example")
    run_queue(engine, cfg)
    with Session(engine) as session:
        ids = dict(session.execute(select(Lead.email, Lead.id)).all())
        session.add(make.activity(ids["quick@nl.example"], "sales_accepted", T0 + timedelta(hours=3), source="crm"))
        # Before the lead was assigned: does not count for this owner.
        session.add(make.activity(ids["early@nl.example"], "sales_accepted", T0 - timedelta(hours=3), source="crm"))
        # Not a sales outcome.
        session.add(make.activity(ids["slow@nl.example"], "page_view", T0 + timedelta(hours=3), source="crm"))
        session.commit()
    report = check(engine, cfg, 25)
    assert report.met == 1 and sum(report.reassigned.values()) == 2
    assert owners_by_email(engine)["quick@nl.example"] == "anna"


def test_a_lead_that_left_sql_closes_its_sla(engine: Engine) -> None:
    cfg = sla_config()
    add_sql(engine, "won@nl.example")
    run_queue(engine, cfg)
    with Session(engine) as session:
        session.execute(update(Lead).values(stage=Stage.customer.value))
        session.commit()
    assert check(engine, cfg, 25).met == 1
    assert [a.status for a in assignments(engine)] == ["met"]


def test_until_delivered_and_escalate_directly(engine: Engine) -> None:
    cfg = sla_config(until="delivered", on_breach="escalate")
    add_sql(engine, "delivered@nl.example")
    add_sql(engine, "stuck@nl.example")
    run_queue(engine, cfg)
    with Session(engine) as session:
        session.execute(
            update(HandoffOutbox)
            .where(HandoffOutbox.payload["lead"]["email"].as_string() == "delivered@nl.example")
            .values(status=OutboxStatus.sent.value)
        )
        session.commit()
    report = check(engine, cfg, 25)
    assert report.met == 1 and report.escalated == Counter({"benelux": 1}) and not report.reassigned
    assert owners_by_email(engine)["stuck@nl.example"] == "bram"


def test_no_one_left_to_take_it_escalates(engine: Engine) -> None:
    capped = [{**o, "max_open_sqls": 1} if o["id"] in ("anna", "bram", "cleo") else o for o in OWNERS]
    cfg = config(owners=capped, teams=[{**TEAMS[0], "manager": MANAGER}, *TEAMS[1:]], sla={"hours": 24})
    for n in range(3):
        add_sql(engine, f"l{n}@nl.example")
    run_queue(engine, cfg)  # anna, bram and cleo each hold one: the whole team is full
    report = check(engine, cfg, 25)
    assert report.escalated == Counter({"benelux": 3}) and not report.reassigned
    assert [a.status for a in assignments(engine)] == ["escalated"] * 3
    assert [kind for kind, _ in notifications(engine)].count("escalated") == 3


def test_two_workers_settle_each_breach_once(postgres_url: str) -> None:
    """Two workers checking SLAs at once on PostgreSQL: one reassignment per breach, no pointer skipped."""
    setup = make_engine(postgres_url)
    upgrade(setup)
    cfg = sla_config()
    for n in range(12):
        add_sql(setup, f"l{n}@nl.example")
    run_queue(setup, cfg)
    reports: list[SlaReport] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        engine = make_engine(postgres_url)
        try:
            barrier.wait()
            reports.append(check(engine, cfg, 25))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2
    assert sum((r.reassigned for r in reports), Counter()) == Counter({"anna": 4, "bram": 4, "cleo": 4})
    assert len(assignments(setup)) == 24 and len(outbox(setup)) == 24 and len(notifications(setup)) == 24
    with Session(setup) as session:
        assert session.get(TeamRotation, "benelux").assigned == 24  # type: ignore[union-attr]
    setup.dispose()
