"""The newest rows an outbox gave up on, for the event that tells admins a run dead-lettered some."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from leadflow.leads.db.models import EmailOutbox, HandoffOutbox, OutboxStatus


@dataclass(frozen=True)
class DeadRow:
    id: int | None
    key: str
    lead_id: int
    error: str  # the last error, cut to 300 characters


def dead_table(kind: str) -> str:
    """The outbox table of `kind`: handoff, or email for anything else."""
    return HandoffOutbox.__tablename__ if kind == "handoff" else EmailOutbox.__tablename__


def newest_dead(session: Session, *, kind: str, destination: str, limit: int) -> list[DeadRow]:
    """Dead handoffs to `destination` (kind "handoff") or dead emails (any other kind), newest first."""
    table: type[EmailOutbox] | type[HandoffOutbox] = HandoffOutbox if kind == "handoff" else EmailOutbox
    query = select(col(table.id), col(table.idempotency_key), col(table.lead_id), col(table.last_error)).where(
        col(table.status) == OutboxStatus.dead.value
    )
    if kind == "handoff":
        query = query.where(col(HandoffOutbox.destination) == destination)
    rows = session.exec(query.order_by(col(table.id).desc()).limit(limit)).all()
    return [DeadRow(id=i, key=key, lead_id=lead, error=(error or "")[:300]) for i, key, lead, error in rows]
