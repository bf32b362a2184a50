"""Dead letters: handoffs (and notifications) given up after the configured horizon, and re-driving them.

A dead row keeps its idempotency key, so re-driving it after the receiver is fixed still lands
once: a receiver that got an earlier attempt deduplicates on the same `webhook-id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from leadflow.leads.db.models import HandoffOutbox, NotificationOutbox, OutboxStatus


def dead_handoffs(session: Session, *, destination: str | None = None) -> list[HandoffOutbox]:
    query = (
        select(HandoffOutbox)
        .where(col(HandoffOutbox.status) == OutboxStatus.dead.value)
        .order_by(col(HandoffOutbox.id))
    )
    if destination is not None:
        query = query.where(col(HandoffOutbox.destination) == destination)
    return list(session.exec(query))


def dead_counts(session: Session) -> dict[str, int]:
    """Dead handoffs now, per destination (for the run report)."""
    rows = session.exec(
        select(col(HandoffOutbox.destination), func.count())
        .where(col(HandoffOutbox.status) == OutboxStatus.dead.value)
        .group_by(col(HandoffOutbox.destination))
    ).all()
    return {destination: count for destination, count in rows}


def redrive(
    session: Session,
    *,
    now: datetime,
    ids: Sequence[int] = (),
    destination: str | None = None,
    notifications: bool = False,
) -> int:
    """Put dead handoffs back in the queue (all, or those with these ids / this destination).

    Attempts start again from zero and the time horizon from now; the last error is kept until
    the next attempt replaces it. With `notifications`, dead notifications are re-driven too.
    Returns how many rows were re-driven; caller commits.
    """
    query = (
        update(HandoffOutbox)
        .where(col(HandoffOutbox.status) == OutboxStatus.dead.value)
        # Due at once, even for a run "as of" an earlier time (replays, tests): due since it was created.
        .values(
            status=OutboxStatus.pending.value, attempts=0, next_attempt_at=HandoffOutbox.created_at, requeued_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if ids:
        query = query.where(col(HandoffOutbox.id).in_(list(ids)))
    if destination is not None:
        query = query.where(col(HandoffOutbox.destination) == destination)
    count = int(session.exec(query).rowcount or 0)
    if notifications:
        count += int(
            session.exec(
                update(NotificationOutbox)
                .where(col(NotificationOutbox.status) == OutboxStatus.dead.value)
                .values(
                    status=OutboxStatus.pending.value,
                    attempts=0,
                    next_attempt_at=NotificationOutbox.created_at,
                    requeued_at=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            or 0
        )
    return count
