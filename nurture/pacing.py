"""Pacing a sequence from delivery: the next step's clock starts when the previous email was sent.

Queuing a step leaves its enrollment waiting for delivery (`next_due_at` NULL). Once that email
is settled, `pace_from_sends` starts the next step's delay (or `wait_for` window) at its `sent_at`,
so a frequency cap, a quiet-hours deferral or a retried send pushes the rest of the sequence back,
and two emails of one sequence to one lead are never closer than the configured delay. An email
that never went out (skipped, failed, dead) starts the clock when it is noticed here. An email
still pending, sending or in flight keeps the enrollment waiting: nothing more is queued meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.nurture import NurtureStep, Sequence
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, NurtureEnrollment, OutboxStatus

E = NurtureEnrollment
# The email reached the server (or may have): the next step counts from when it did.
DELIVERED = (OutboxStatus.sent.value, OutboxStatus.unconfirmed.value)
# The email will never go out: the next step counts from now.
NOT_SENT = (OutboxStatus.skipped.value, OutboxStatus.failed.value, OutboxStatus.dead.value)
_CHUNK = 1000


def wait_days(step: NurtureStep) -> float:
    """How long after the previous email was sent (at most) this step becomes due."""
    return step.wait_for.up_to_days if step.wait_for is not None else step.delay_days


def previous_key(enrollment_id: int, step: int) -> str:
    """The outbox key of the email queued before the enrollment moved to `step` (always step - 1)."""
    return f"nurture:{enrollment_id}:{step - 1}"


def pace_from_sends(*, session: Session, config: WorkspaceConfig, now: datetime) -> int:
    """Give enrollments waiting for delivery their next due time, once the previous email is settled.

    Returns how many were paced; the caller commits. One query for the waiting enrollments and
    one per chunk for their previous emails (looked up by idempotency key, which is indexed).
    """
    sequences: dict[str, Sequence] = {s.name: s for s in config.nurture.sequences}
    waiting = session.execute(
        select(col(E.id), col(E.sequence), col(E.step)).where(
            col(E.status) == EnrollmentStatus.active, col(E.next_due_at).is_(None)
        )
    ).all()
    updates: list[dict[str, Any]] = []
    for chunk in _chunks(waiting, _CHUNK):
        keys = {previous_key(r.id, r.step): r for r in chunk}
        settled = {
            key: (status, sent_at)
            for key, status, sent_at in session.execute(
                select(col(EmailOutbox.idempotency_key), col(EmailOutbox.status), col(EmailOutbox.sent_at)).where(
                    col(EmailOutbox.idempotency_key).in_(sorted(keys))
                )
            )
        }
        for key, row in keys.items():
            start = _clock_start(settled.get(key), now)
            if start is None:
                continue  # the previous email is still on its way
            sequence = sequences.get(row.sequence)
            if sequence is None or row.step >= len(sequence.steps):
                due = start  # queue_due_steps finishes it (sequence gone or shortened)
            else:
                due = start + timedelta(days=wait_days(sequence.steps[row.step]))
            updates.append({"id": row.id, "next_due_at": due, "waiting_since": start})
    if updates:
        session.execute(update(E), updates)
    return len(updates)


def _clock_start(previous: tuple[str, datetime | None] | None, now: datetime) -> datetime | None:
    """When the next step's clock starts, given the previous email's status and sent_at; None: not yet."""
    if previous is None:
        return now  # no such email (cleaned up by hand): do not wait for ever
    status, sent_at = previous
    if str(status) in DELIVERED:
        return sent_at or now
    if str(status) in NOT_SENT:
        return now
    return None


def _chunks(items: Seq[Any], size: int) -> Iterator[Seq[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
