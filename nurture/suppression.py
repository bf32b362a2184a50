"""Suppressing a lead: the one place that records an opt-out, whatever channel it came from.

A suppression applies to all marketing email (scope "all") or to one sequence (scope = its name).
Recording one writes the suppression log row, stops the lead's active enrollments it covers, marks
the lead (scope "all") and stores the opt-out as activity, all in the caller's transaction.
Suppressing twice is harmless: the second time changes nothing and records no second activity.
Enrollment and the send-time gate ask `suppressed()` so that both honour the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.db.models import (
    EVERY_EMAIL,
    Activity,
    ActivityType,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    Suppression,
    SuppressionReason,
)
from leadflow.leads.db.sql import rowcount, upsert_insert
from leadflow.leads.ingest.lead_upsert import mark_due

ALL = EVERY_EMAIL

# What each reason means for the lead's own state, and the activity it leaves (a scoring signal).
_ACTIVITY = {
    SuppressionReason.unsubscribed: ActivityType.unsubscribe,
    SuppressionReason.complained: ActivityType.unsubscribe,
    SuppressionReason.bounced: ActivityType.email_bounce,
}


class UnknownLead(LookupError):
    """There is no lead with that id (deleted, or a token from another database)."""


@dataclass(frozen=True)
class Suppressed:
    created: bool  # False when the lead already was suppressed for this scope
    exited: int  # active enrollments stopped


def suppressed(email: str | SQLColumnExpression[str], sequence: str) -> ColumnElement[bool]:
    """True when the suppression log stops `sequence` for this email (in a query, correlated to Lead.email)."""
    return exists().where(col(Suppression.email) == email, col(Suppression.scope).in_((ALL, sequence)))


def is_suppressed(*, session: Session, email: str, sequence: str) -> bool:
    return bool(session.execute(select(suppressed(email, sequence))).scalar())


def suppress(
    *,
    session: Session,
    lead_id: int,
    scope: str,
    reason: SuppressionReason,
    source: str,
    now: datetime,
    detail: str | None = None,
) -> Suppressed:
    """Record that `lead_id` must get no email in `scope` ("all" or a sequence name); the caller commits."""
    email = session.scalar(select(col(Lead.email)).where(col(Lead.id) == lead_id))
    if email is None:
        raise UnknownLead(f"no lead with id {lead_id}")
    inserted = session.execute(
        upsert_insert(session, Suppression)
        .values(
            email=email,
            lead_id=lead_id,
            scope=scope,
            reason=reason.value,
            source=source,
            detail=detail[:500] if detail else None,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email", "scope"])
        .returning(col(Suppression.id))
    ).scalar_one_or_none()
    kind = _ACTIVITY.get(reason)
    if inserted is not None and kind is not None:
        _record_activity(session, lead_id, kind, scope, source, f"suppression:{inserted}", now)
    if scope == ALL:
        column = col(Lead.bounced_at) if reason == SuppressionReason.bounced else col(Lead.unsubscribed_at)
        session.execute(
            update(Lead).where(col(Lead.id) == lead_id, column.is_(None)).values({column: now, "updated_at": now})
        )
    return Suppressed(created=inserted is not None, exited=_exit(session, lead_id, scope, reason, now))


def _record_activity(
    session: Session, lead_id: int, kind: ActivityType, scope: str, source: str, source_id: str, now: datetime
) -> None:
    session.execute(
        upsert_insert(session, Activity)
        .values(
            lead_id=lead_id,
            type=kind.value,
            occurred_at=now,
            source=source,
            source_id=source_id,
            target=scope,
            properties={"scope": scope},
            ingested_at=now,
        )
        .on_conflict_do_nothing(index_elements=["source", "source_id"])
    )
    mark_due(session, [lead_id])  # new activity: the next incremental requalify looks at the lead
    session.execute(
        update(Lead)
        .where(
            col(Lead.id) == lead_id,
            or_(col(Lead.last_activity_at).is_(None), col(Lead.last_activity_at) < now),
        )
        .values(last_activity_at=now)
    )


def _exit(session: Session, lead_id: int, scope: str, reason: SuppressionReason, now: datetime) -> int:
    where = [col(NurtureEnrollment.lead_id) == lead_id, col(NurtureEnrollment.status) == EnrollmentStatus.active]
    if scope != ALL:
        where.append(col(NurtureEnrollment.sequence) == scope)
    result = session.execute(
        update(NurtureEnrollment)
        .where(*where)
        .values(status=EnrollmentStatus.exited.value, exited_at=now, exit_reason=reason.value, next_due_at=None)
        .execution_options(synchronize_session=False, preserve_rowcount=True)
    )
    return rowcount(result)
