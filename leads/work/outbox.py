"""Claiming due outbox rows under a lease: the one claim every outbox uses (email, handoff, notifications).

A row is due when it is `pending`, or `sending` with a lease that ran out (its sender died), and its
`next_attempt_at` has come. Claiming marks it `sending` until `now + lease` and counts the attempt,
so a sender that died comes back after the lease and the attempt number fences a sender whose lease
was taken over. On PostgreSQL the select skips rows another sender holds (`FOR UPDATE SKIP LOCKED`),
so concurrent senders never wait for each other nor claim the same row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from leadflow.leads.db.models import OutboxStatus

Clock = Callable[[], datetime]  # naive UTC; senders read it at each claim and each peer's answer


def fixed_clock(now: datetime | None) -> Clock:
    """A clock that stands at `now`, for callers that decide the time themselves (tests, replays)."""
    if now is None:
        raise TypeError("a sender needs `now` or `clock`")
    return lambda: now


def claim_due(
    *,
    session: Session,
    table: Any,
    now: datetime,
    limit: int,
    lease: timedelta,
    where: Sequence[Any] = (),
    order_by: Sequence[Any] | None = None,
) -> list[int]:
    """Take up to `limit` due rows of `table` (also matching `where`) and commit the claim; returns their ids.

    `table` is an outbox model with `id`, `status`, `next_attempt_at` and `attempts`; the rows chosen
    are the first in `order_by` (default: by id), returned by id.
    """
    due = (
        select(table.id)
        .where(
            *where,
            or_(table.status == OutboxStatus.pending, table.status == OutboxStatus.sending),
            table.next_attempt_at <= now,
        )
        .order_by(*(order_by or (table.id,)))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    # One statement: on SQLite a select and then an update let two processes read the same due rows
    # before either writes, and both would claim them.
    claimed = session.execute(
        update(table)
        .where(table.id.in_(due.scalar_subquery()))
        .values(status=OutboxStatus.sending.value, next_attempt_at=now + lease, attempts=table.attempts + 1)
        .returning(table.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(claimed.scalars())
    session.commit()
    return ids


def count_due(*, session: Session, table: Any, now: datetime, where: Sequence[Any] = ()) -> int:
    """How many rows `claim_due` could take now: what a sending step expects to get through (its progress)."""
    due = (
        select(func.count())
        .select_from(table)
        .where(
            *where,
            or_(table.status == OutboxStatus.pending, table.status == OutboxStatus.sending),
            table.next_attempt_at <= now,
        )
    )
    return int(session.execute(due).scalar_one())
