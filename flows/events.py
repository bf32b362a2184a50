"""Prefect events for what others may react to: stage changes, dead letters, finished sequences.

Events are bounded: per-lead (or per-enrollment) events up to a cap per run, then one summary event
per run with the full counts, so a run that moves a million leads sends a few hundred events, not a
million. Every event emitted inside a flow run is related to that run and its flow by Prefect.
"""

from __future__ import annotations

from datetime import datetime

from prefect.events import emit_event
from sqlalchemy import Engine

from leadflow.handoff.report import HandoffRunReport
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from leadflow.leads.requalify.run_changes import first_moves_to, stage_changes
from leadflow.leads.work.dead_rows import dead_table, newest_dead
from leadflow.nurture.finished import ended_by_sequence, finished_sequences

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
    with session_scope(engine) as session:
        counts = stage_changes(session, run_id)
        rows = first_moves_to(session, run_id, EVENT_STAGES, cap)
    for move in rows:
        emit_event(
            event=f"leadflow.lead.{move.to_stage}",
            resource=_lead_resource(move.lead_id, move.email, move.to_stage),
            payload={
                "from_stage": move.from_stage,
                "to_stage": move.to_stage,
                "score": {"fit": move.fit_score, "engagement": move.engagement_score, "total": move.score},
                "reason": move.reason,
                "ruleset_version": move.ruleset_version,
            },
        )
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
    with session_scope(engine) as session:
        rows = newest_dead(session, kind=kind, destination=destination, limit=sample)
    emit_event(
        event=f"leadflow.{kind}.dead-lettered",
        resource={"prefect.resource.id": f"leadflow.{kind}.{destination}", "prefect.resource.name": destination},
        payload={
            "dead": dead,
            "table": dead_table(kind),
            "newest": [{"id": r.id, "key": r.key, "lead_id": r.lead_id, "error": r.error} for r in rows],
        },
    )


def emit_finished_sequences(engine: Engine, *, now: datetime, cap: int) -> dict[str, int]:
    """`leadflow.nurture.sequence-finished` per enrollment that completed its sequence in this run (up to
    `cap`), then one `leadflow.nurture.summary` with completions and exits per sequence."""
    with session_scope(engine) as session:
        ended_counts = ended_by_sequence(session, now)
        rows = finished_sequences(session, now, cap)
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


def emit_handoff_events(engine: Engine, report: HandoffRunReport) -> None:
    """A handoff run's dead letters and backlogs, per destination, then its notifications' backlog."""
    for name, counts in report.destinations.items():
        emit_dead_letters(engine, kind="handoff", destination=name, dead=counts.dead)
        why = counts.error or report.disabled.get(name) or counts.stopped
        emit_backlog(kind="handoff", name=name, backlog=counts.backlog, reason=why)
    emit_backlog(kind="notify", name="notifications", backlog=report.notify_backlog, reason=report.notify_stopped)
