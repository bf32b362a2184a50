"""The SLA on an assigned SQL: act within N hours, or the lead goes to the next owner or a manager.

"Acted" is, per `handoff.sla.until`, either that the handoff reached every destination
(`delivered`) or that sales recorded an outcome on the lead (`sales_activity`: sales_accepted,
sales_rejected, sales_disqualified, deal_won, deal_lost, or the configured list) since the
assignment. Each breach is settled once: the assignment's status moves from active with a
compare-and-set, the new owner's assignment has a unique (transition, seq), and notifications and
re-handoffs have idempotency keys, so re-runs and parallel workers never act twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlmodel import Session, col

from leadflow.connectors.handoff_payload import HandoffPayload
from leadflow.handoff.assignment import Choice, choose, open_sqls, owner_payload, queue_notification, record, settle
from leadflow.handoff.outbox import pending_row, queue_pending
from leadflow.leads.config.assignment import AssignmentConfig, SlaConfig
from leadflow.leads.db.models import (
    Activity,
    AssignmentStatus,
    HandoffOutbox,
    Lead,
    LeadAssignment,
    OutboxStatus,
    Stage,
)


@dataclass
class SlaReport:
    met: int = 0
    reassigned: Counter[str] = field(default_factory=Counter)  # by the owner it went to
    escalated: Counter[str] = field(default_factory=Counter)  # by team


def _delivered(session: Session, transition_id: int) -> bool:
    rows = select(col(HandoffOutbox.status)).where(col(HandoffOutbox.transition_id) == transition_id)
    statuses = set(session.execute(rows).scalars())
    return bool(statuses) and statuses <= {OutboxStatus.sent.value}


def _acted(session: Session, sla: SlaConfig, row: LeadAssignment) -> bool:
    if sla.until == "delivered":
        return _delivered(session, row.transition_id)
    return bool(
        session.execute(
            select(
                exists().where(
                    col(Activity.lead_id) == row.lead_id,
                    col(Activity.type).in_(sla.activity_types),
                    col(Activity.occurred_at) >= row.assigned_at,
                )
            )
        ).scalar()
    )


def check_sla(*, session: Session, config: AssignmentConfig, now: datetime) -> SlaReport:
    """Settle every active assignment whose deadline has passed; caller commits."""
    report = SlaReport()
    sla = config.sla
    if sla is None:
        return report
    due = session.execute(
        select(LeadAssignment, Lead)
        .join(Lead, col(Lead.id) == col(LeadAssignment.lead_id))
        .where(
            col(LeadAssignment.status) == AssignmentStatus.active.value,
            col(LeadAssignment.sla_due_at).is_not(None),
            col(LeadAssignment.sla_due_at) <= now,
        )
        .order_by(col(LeadAssignment.sla_due_at), col(LeadAssignment.id))
    ).all()
    load = open_sqls(session)
    for row, lead in due:
        if lead.stage != Stage.sql or _acted(session, sla, row):
            report.met += settle(session, row.id, AssignmentStatus.met, now)
            continue
        team = config.team(row.team) if row.team else None
        reassign = sla.on_breach == "reassign" and team is not None and row.seq < sla.max_reassignments
        # Claim the breach first (compare-and-set), so a worker that loses the race moves no pointer.
        if not settle(session, row.id, AssignmentStatus.reassigned if reassign else AssignmentStatus.escalated, now):
            continue
        choice = Choice(None, "")
        if reassign and team is not None:
            tried = set(
                session.execute(
                    select(col(LeadAssignment.owner_id)).where(col(LeadAssignment.transition_id) == row.transition_id)
                ).scalars()
            )
            choice = choose(session, config, team, load, exclude={t for t in tried if t})
        if choice.owner is not None:
            reason = f"SLA of {sla.hours:g} h missed by {row.owner_id}; {choice.reason}"
            new = record(
                session,
                config,
                lead=lead,
                transition_id=row.transition_id,
                seq=row.seq + 1,
                team=team,
                choice=Choice(choice.owner, reason),
                now=now,
            )
            _rehandoff(session, config, row, new, now)
            load[choice.owner.id] += 1
            if row.owner_id:
                load[row.owner_id] -= 1
            report.reassigned[choice.owner.id] += 1
        else:
            if reassign:  # nobody else in the team has room: escalate instead
                escalated = AssignmentStatus.escalated.value
                session.execute(update(LeadAssignment).where(col(LeadAssignment.id) == row.id).values(status=escalated))
            if team is not None and team.manager and config.notify.enabled:
                queue_notification(session, row, kind="escalated", recipient=f"manager:{team.name}", now=now)
            report.escalated[row.team or "-"] += 1
    return report


def _rehandoff(
    session: Session, config: AssignmentConfig, old: LeadAssignment, new: LeadAssignment, now: datetime
) -> None:
    """Tell every destination that had the lead who owns it now (a new key per reassignment)."""
    previous = session.execute(
        select(HandoffOutbox)
        .where(col(HandoffOutbox.transition_id) == old.transition_id)
        .order_by(col(HandoffOutbox.destination), col(HandoffOutbox.id).desc())
    ).scalars()
    latest: dict[str, HandoffOutbox] = {}
    for row in previous:
        latest.setdefault(row.destination, row)
    rows: list[dict[str, Any]] = []
    for destination, row in latest.items():
        base = row.idempotency_key.split(":r", 1)[0]
        payload = {
            **row.payload,
            "event": "lead.reassigned",
            "owner": owner_payload(config, new.owner_id),
            "previous_owner": owner_payload(config, old.owner_id),
            "reassigned_at": now.isoformat() + "Z",
        }
        payload["lead"] = {**payload.get("lead", {}), "owner": new.owner_id}
        again = HandoffPayload.of(payload)
        rows.append(pending_row(f"{base}:r{new.seq}", row.lead_id, row.transition_id, destination, again, now))
    queue_pending(session, rows)
