"""Prefect events for what others may react to: stage changes, dead letters, finished sequences.

Events are bounded: per-lead (or per-enrollment) events up to a cap per run, then one summary event
per run with the full counts, so a run that moves a million leads sends a few hundred events, not a
million. Every event emitted inside a flow run is related to that run and its flow by Prefect.
"""

from __future__ import annotations

from datetime import datetime

from prefect.events import emit_event
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from leadflow.leads.db.models import (
    EmailOutbox,
    EnrollmentStatus,
    HandoffOutbox,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Stage,
    StageTransition,
)

EVENT_STAGES = (Stage.mql.value, Stage.sql.value)


def _lead_resource(lead_id: int, email: str, stage: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"leadflow.lead.{lead_id}",
        "prefect.resource.name": email,
        "leadflow.stage": stage,
    }


def emit_stage_events(engine: Engine, *, run_id: str, cap: int) -> dict[str, int]:
    """`leadflow.lead.mql` / `leadflow.lead.sql` per lead this run moved there (up to `cap`), then one
    `leadflow.requalify.summary` with every count and how many per-lead events were left out."""
    with Session(engine) as session:
        counts: dict[str, int] = dict(
            session.execute(
                select(StageTransition.to_stage, func.count())
                .where(StageTransition.run_id == run_id)
                .group_by(StageTransition.to_stage)
            ).all()
        )
        rows = session.execute(
            select(StageTransition, Lead.email)
            .join(Lead, Lead.id == StageTransition.lead_id)
            .where(StageTransition.run_id == run_id, StageTransition.to_stage.in_(EVENT_STAGES))
            .order_by(StageTransition.id)
            .limit(cap)
        ).all()
    for transition, email in rows:
        emit_event(
            event=f"leadflow.lead.{transition.to_stage}",
            resource=_lead_resource(transition.lead_id, email, transition.to_stage),
            payload={
                "from_stage": transition.from_stage,
                "to_stage": transition.to_stage,
                "score": {"fit": transition.fit_score, "engagement": transition.engagement_score,
                          "total": transition.score},
                "reason": transition.reason,
                "ruleset_version": transition.ruleset_version,
            },
        )  # fmt: skip
    eligible = sum(counts.get(stage, 0) for stage in EVENT_STAGES)
    emit_event(
        event="leadflow.requalify.summary",
        resource={"prefect.resource.id": "leadflow.requalify", "prefect.resource.name": "requalify"},
        payload={"stage_changes": counts, "lead_events": len(rows), "lead_events_left_out": eligible - len(rows)},
    )
    return counts


def emit_dead_letters(engine: Engine, *, kind: str, destination: str, dead: int, sample: int = 10) -> None:
    """`leadflow.<kind>.dead-lettered` when this run gave up on some rows: the count and the newest few."""
    if dead <= 0:
        return
    table = HandoffOutbox if kind == "handoff" else EmailOutbox
    with Session(engine) as session:
        query = select(table.id, table.idempotency_key, table.lead_id, table.last_error).where(
            table.status == OutboxStatus.dead.value
        )
        if table is HandoffOutbox:
            query = query.where(HandoffOutbox.destination == destination)
        rows = session.execute(query.order_by(table.id.desc()).limit(sample)).all()
    emit_event(
        event=f"leadflow.{kind}.dead-lettered",
        resource={"prefect.resource.id": f"leadflow.{kind}.{destination}", "prefect.resource.name": destination},
        payload={
            "dead": dead,
            "table": table.__tablename__,
            "newest": [
                {"id": r.id, "key": r.idempotency_key, "lead_id": r.lead_id, "error": (r.last_error or "")[:300]}
                for r in rows
            ],
        },
    )


def emit_finished_sequences(engine: Engine, *, now: datetime, cap: int) -> dict[str, int]:
    """`leadflow.nurture.sequence-finished` per enrollment that completed its sequence in this run (up to
    `cap`), then one `leadflow.nurture.summary` with completions and exits per sequence."""
    with Session(engine) as session:
        ended = NurtureEnrollment.exited_at == now
        per = session.execute(
            select(NurtureEnrollment.sequence, NurtureEnrollment.exit_reason, func.count())
            .where(ended)
            .group_by(NurtureEnrollment.sequence, NurtureEnrollment.exit_reason)
        ).all()
        rows = session.execute(
            select(NurtureEnrollment.id, NurtureEnrollment.lead_id, NurtureEnrollment.sequence, Lead.email)
            .join(Lead, Lead.id == NurtureEnrollment.lead_id)
            .where(ended, NurtureEnrollment.status == EnrollmentStatus.completed.value)
            .order_by(NurtureEnrollment.id)
            .limit(cap)
        ).all()
    for row in rows:
        emit_event(
            event="leadflow.nurture.sequence-finished",
            resource={
                "prefect.resource.id": f"leadflow.enrollment.{row.id}",
                "prefect.resource.name": f"{row.sequence}: {row.email}",
                "leadflow.sequence": row.sequence,
            },
            related=[{**_lead_resource(row.lead_id, row.email, ""), "prefect.resource.role": "lead"}],
            payload={"sequence": row.sequence, "lead_id": row.lead_id},
        )
    ended_counts = {f"{sequence}:{reason}": n for sequence, reason, n in per}
    completed = sum(n for key, n in ended_counts.items() if key.endswith(":completed"))
    emit_event(
        event="leadflow.nurture.summary",
        resource={"prefect.resource.id": "leadflow.nurture", "prefect.resource.name": "nurture"},
        payload={"ended": ended_counts, "finished_events": len(rows), "finished_left_out": completed - len(rows)},
    )
    return ended_counts


def emit_backlog(*, kind: str, name: str, backlog: int, reason: str | None) -> None:
    """`leadflow.<kind>.backlog` when a run leaves rows undelivered (a per-run limit, a failing peer)."""
    if backlog <= 0:
        return
    emit_event(
        event=f"leadflow.{kind}.backlog",
        resource={"prefect.resource.id": f"leadflow.{kind}.{name}", "prefect.resource.name": name},
        payload={"backlog": backlog, "reason": reason or "waiting for a retry"},
    )
