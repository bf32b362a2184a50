"""Who is in which sequence: enroll cold leads, exit those who converted or opted out, queue due steps.

Enrollment and exits are single set-based statements. Queuing a due step writes its outbox row
and advances the enrollment in one transaction, keyed by (enrollment, step), so a step can be
queued once and only once however often the flow runs.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import exists, insert, literal, select, update
from sqlalchemy.orm import Session

from leads.config import Sequence, WorkspaceConfig
from leads.models import (
    FUNNEL,
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Stage,
    funnel_rank,
)
from leads.sql import upsert_insert
from nurture.suppression import suppressed


def outbox_key(enrollment_id: int, step: int) -> str:
    return f"nurture:{enrollment_id}:{step}"


def enroll(*, session: Session, config: WorkspaceConfig, now: datetime) -> Counter[str]:
    """Enroll eligible leads; sequences earlier in the config win, one active sequence per lead."""
    enrolled: Counter[str] = Counter()
    for sequence in config.nurture.sequences:
        rule = sequence.enroll
        conditions = [
            Lead.stage.in_([s.value for s in rule.stages]),
            Lead.unsubscribed_at.is_(None),
            Lead.bounced_at.is_(None),
            ~exists().where(NurtureEnrollment.lead_id == Lead.id, NurtureEnrollment.sequence == sequence.name),
            ~exists().where(NurtureEnrollment.lead_id == Lead.id, NurtureEnrollment.status == EnrollmentStatus.active),
            ~suppressed(Lead.email, sequence.name),
        ]
        if rule.min_score is not None:
            conditions.append(Lead.score >= rule.min_score)
        if rule.max_score is not None:
            conditions.append(Lead.score <= rule.max_score)
        first_due = now + timedelta(days=sequence.steps[0].delay_days)
        chosen = select(
            Lead.id,
            literal(sequence.name),
            literal(0),
            literal(EnrollmentStatus.active.value),
            literal(first_due),
            literal(now),
        ).where(*conditions)
        result = session.execute(
            insert(NurtureEnrollment)
            .from_select(["lead_id", "sequence", "step", "status", "next_due_at", "enrolled_at"], chosen)
            # SQLAlchemy keeps an INSERT's rowcount only when asked; psycopg otherwise reports -1.
            .execution_options(preserve_rowcount=True)
        )
        enrolled[sequence.name] += result.rowcount or 0  # type: ignore[attr-defined]
    return enrolled


def exit_finished(*, session: Session, config: WorkspaceConfig, now: datetime) -> Counter[str]:
    """End active enrollments of leads that unsubscribed, bounced or reached the sequence's goal."""
    exited: Counter[str] = Counter()
    opted_out = {
        "unsubscribed": Lead.unsubscribed_at.is_not(None),
        "bounced": Lead.bounced_at.is_not(None),
        "disqualified": Lead.stage == Stage.disqualified.value,
    }
    for reason, condition in opted_out.items():
        exited[reason] += _exit_where(session, now, reason, condition)
    for sequence in config.nurture.sequences:
        goal = [s.value for s in FUNNEL if funnel_rank(s) >= funnel_rank(sequence.exit_at_stage)]
        exited[f"reached {sequence.exit_at_stage.value}"] += _exit_where(
            session, now, f"reached {sequence.exit_at_stage.value}", Lead.stage.in_(goal), sequence=sequence.name
        )
    return +exited


def _exit_where(session: Session, now: datetime, reason: str, condition: object, sequence: str | None = None) -> int:
    leads = select(Lead.id).where(condition)  # type: ignore[arg-type]
    where = [NurtureEnrollment.status == EnrollmentStatus.active, NurtureEnrollment.lead_id.in_(leads)]
    if sequence is not None:
        where.append(NurtureEnrollment.sequence == sequence)
    result = session.execute(
        update(NurtureEnrollment)
        .where(*where)
        .values(status=EnrollmentStatus.exited.value, exited_at=now, exit_reason=reason, next_due_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


def queue_due_steps(*, session: Session, config: WorkspaceConfig, now: datetime, limit: int = 5000) -> int:
    """Write an outbox row for each due step and advance its enrollment; the caller commits."""
    sequences = {s.name: s for s in config.nurture.sequences}
    due = session.execute(
        select(NurtureEnrollment.id, NurtureEnrollment.lead_id, NurtureEnrollment.sequence, NurtureEnrollment.step)
        .where(NurtureEnrollment.status == EnrollmentStatus.active, NurtureEnrollment.next_due_at <= now)
        .order_by(NurtureEnrollment.next_due_at)
        .limit(limit)
    ).all()
    rows, advances = [], []
    for enrollment_id, lead_id, name, step in due:
        sequence = sequences.get(name)
        if sequence is None or step >= len(sequence.steps):
            advances.append(_finish(enrollment_id, now, "sequence removed from config" if sequence is None else None))
            continue
        rows.append(
            {
                "idempotency_key": outbox_key(enrollment_id, step),
                "lead_id": lead_id,
                "enrollment_id": enrollment_id,
                "sequence": name,
                "step": step,
                "status": OutboxStatus.pending.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
        advances.append(_advance(enrollment_id, step, sequence, now))
    if rows:
        session.execute(
            upsert_insert(session, EmailOutbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows
        )
    for enrollment_id, values in advances:
        session.execute(
            update(NurtureEnrollment)
            .where(NurtureEnrollment.id == enrollment_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return len(rows)


def _advance(enrollment_id: int, step: int, sequence: Sequence, now: datetime) -> tuple[int, dict[str, object]]:
    following = step + 1
    if following >= len(sequence.steps):
        return _finish(enrollment_id, now, None)
    due = now + timedelta(days=sequence.steps[following].delay_days)
    return enrollment_id, {"step": following, "next_due_at": due}


def _finish(enrollment_id: int, now: datetime, reason: str | None) -> tuple[int, dict[str, object]]:
    status = EnrollmentStatus.completed if reason is None else EnrollmentStatus.exited
    return enrollment_id, {
        "status": status.value,
        "next_due_at": None,
        "exited_at": now,
        "exit_reason": reason or "completed",
    }
