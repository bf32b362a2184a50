"""Enrollments that ended at a run's moment: completions and exits per sequence, for the run's events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from leadflow.leads.db.models import EnrollmentStatus, Lead, NurtureEnrollment


@dataclass(frozen=True)
class Finished:
    """An enrollment that completed its sequence, with its lead's email."""

    id: int
    lead_id: int
    sequence: str
    email: str


def ended_by_sequence(session: Session, now: datetime) -> dict[str, int]:
    """Enrollments that ended at `now`, keyed "sequence:reason" (reason "completed" for a finished sequence)."""
    E = NurtureEnrollment
    rows = session.exec(
        select(col(E.sequence), col(E.exit_reason), func.count())
        .where(col(E.exited_at) == now)
        .group_by(col(E.sequence), col(E.exit_reason))
    ).all()
    return {f"{sequence}:{reason}": n for sequence, reason, n in rows}


def finished_sequences(session: Session, now: datetime, limit: int) -> list[Finished]:
    """The first `limit` enrollments that completed their sequence at `now`."""
    E = NurtureEnrollment
    rows = session.exec(
        select(col(E.id), col(E.lead_id), col(E.sequence), col(Lead.email))
        .join(Lead, col(Lead.id) == col(E.lead_id))
        .where(col(E.exited_at) == now, col(E.status) == EnrollmentStatus.completed.value)
        .order_by(col(E.id))
        .limit(limit)
    ).all()
    return [Finished(id=i or 0, lead_id=lead, sequence=sequence, email=email) for i, lead, sequence, email in rows]
