"""Work that several workers share without doing any of it twice: rounds of shards, and named leases.

A *round* is one planned pass of a job (a requalify run): a list of shards, each an id range or a
list of lead ids. Any number of workers, on any machines, join the job's open round and claim its
shards one at a time; a job has at most one open round (a unique column), so two runs that start
together share one plan instead of making two.

- Claiming takes the next pending shard (or one whose claim lease ran out: its worker died) with
  `FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers never wait on each other; the update is a
  compare-and-set on the shard's attempt count, which is what makes it safe on SQLite too (one
  writer at a time there).
- Finishing a shard is marked *in the transaction that writes its results*, and first, so the shard
  row stays locked while it is processed: the work and the mark commit together or not at all.
  A worker whose claim was taken over (its lease ran out) finds the mark refused and rolls back.
- The last worker out closes the round, and only one does (a compare-and-set on the round).

Named leases for single-writer steps live in leads.leases.

Timestamps here are wall-clock (`utcnow`), never a run's `as_of`: a replay of last month still
holds its claims for real minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.db.models import ShardStatus, WorkRound, WorkShard, utcnow
from leadflow.leads.db.sql import rowcount

CLAIM_LEASE = timedelta(minutes=15)
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PlannedShard:
    lo: int
    hi: int
    ids: list[int] | None = None  # None: every lead with an id in [lo, hi]

    @property
    def size(self) -> int:
        return len(self.ids) if self.ids is not None else self.hi - self.lo + 1


@dataclass(frozen=True)
class Plan:
    mode: str
    as_of: datetime
    shards: list[PlannedShard]


@dataclass(frozen=True)
class Round:
    id: int | None  # None: nothing to do, so no round was opened
    job: str
    mode: str
    as_of: datetime
    shards: int
    joined: bool  # True: another worker planned it


@dataclass(frozen=True)
class Shard:
    id: int
    round_id: int
    seq: int
    lo: int
    hi: int
    ids: list[int] | None
    attempts: int

    @property
    def label(self) -> str:
        what = f"{len(self.ids)} due leads" if self.ids is not None else "leads"
        return f"{self.seq + 1}: {what} {self.lo}-{self.hi}"


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def open_round(
    engine: Engine, *, job: str, worker: str, plan: Callable[[Session], Plan], clock: Clock = utcnow
) -> Round:
    """Join the job's open round, or plan a new one (`plan` runs only when none is open)."""
    for _ in range(5):
        with Session(engine) as session:
            row = session.execute(select(WorkRound).where(col(WorkRound.open_job) == job)).scalar_one_or_none()
            if row is not None:
                return Round(row.id, job, row.mode, row.as_of, row.shards, joined=True)
            planned = plan(session)
            if not planned.shards:
                session.commit()
                return Round(None, job, planned.mode, planned.as_of, 0, joined=False)
            record = WorkRound(
                job=job,
                open_job=job,
                mode=planned.mode,
                as_of=planned.as_of,
                shards=len(planned.shards),
                created_by=worker,
                created_at=clock(),
            )
            session.add(record)
            try:
                session.flush()
            except IntegrityError:  # another worker opened one between our look and our insert: join it
                session.rollback()
                continue
            session.execute(
                insert(WorkShard),
                [
                    {"round_id": record.id, "seq": seq, "lo": s.lo, "hi": s.hi, "ids": s.ids,
                     "status": ShardStatus.pending.value, "attempts": 0, "leads": 0, "changes": 0}
                    for seq, s in enumerate(planned.shards)
                ],
            )  # fmt: skip
            session.commit()
            return Round(record.id, job, planned.mode, planned.as_of, len(planned.shards), joined=False)
    raise RuntimeError(f"could not open or join a {job} round")


def claim_shard(engine: Engine, *, round_id: int, worker: str, clock: Clock = utcnow) -> Shard | None:
    """The next shard nobody holds (pending, or its lease ran out), now held by `worker`; None when none is left."""
    while True:
        with Session(engine) as session:
            now = clock()
            free = or_(
                col(WorkShard.status) == ShardStatus.pending.value,
                and_(col(WorkShard.status) == ShardStatus.claimed.value, col(WorkShard.lease_until) < now),
            )
            query = (
                select(
                    col(WorkShard.id),
                    col(WorkShard.seq),
                    col(WorkShard.lo),
                    col(WorkShard.hi),
                    col(WorkShard.ids),
                    col(WorkShard.attempts),
                )
                .where(col(WorkShard.round_id) == round_id, free)
                .order_by(col(WorkShard.seq))
                .limit(1)
            )
            if _is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            row = session.execute(query).one_or_none()
            if row is None:
                session.commit()
                return None
            taken = rowcount(
                session.execute(
                    update(WorkShard)
                    .where(col(WorkShard.id) == row.id, col(WorkShard.attempts) == row.attempts, free)
                    .values(
                        status=ShardStatus.claimed.value,
                        claimed_by=worker,
                        lease_until=now + CLAIM_LEASE,
                        attempts=row.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            session.commit()
            if taken == 1:
                return Shard(row.id, round_id, row.seq, row.lo, row.hi, row.ids, row.attempts + 1)
        # another worker took that one between our read and our write (SQLite): look again


def finish_shard(session: Session, shard: Shard, *, worker: str, clock: Clock = utcnow) -> bool:
    """Mark the shard done inside the caller's transaction, before its work; False if the claim was lost.

    On False the caller must roll back and skip the shard: another worker holds it now.
    """
    marked = rowcount(
        session.execute(
            update(WorkShard)
            .where(
                col(WorkShard.id) == shard.id,
                col(WorkShard.attempts) == shard.attempts,
                col(WorkShard.claimed_by) == worker,
                col(WorkShard.status) == ShardStatus.claimed.value,
            )
            .values(status=ShardStatus.done.value, done_at=clock())
            .execution_options(synchronize_session=False)
        )
    )
    return marked == 1


def record_shard(session: Session, shard: Shard, *, leads: int, changes: int) -> None:
    """What the shard did, for the round's totals; in the same transaction as `finish_shard`."""
    session.execute(
        update(WorkShard)
        .where(col(WorkShard.id) == shard.id)
        .values(leads=leads, changes=changes)
        .execution_options(synchronize_session=False)
    )


def close_round(
    engine: Engine,
    *,
    round_id: int,
    worker: str,
    on_close: Callable[[Session], None] | None = None,
    clock: Clock = utcnow,
) -> bool | None:
    """Close the round once every shard is done. True: this worker closed it (and ran `on_close` in
    the same transaction); False: it was already closed; None: shards are still being worked on."""
    with Session(engine) as session:
        unfinished = exists().where(
            col(WorkShard.round_id) == round_id, col(WorkShard.status) != ShardStatus.done.value
        )
        closed = rowcount(
            session.execute(
                update(WorkRound)
                .where(col(WorkRound.id) == round_id, col(WorkRound.open_job).is_not(None), ~unfinished)
                .values(open_job=None, closed_at=clock(), closed_by=worker)
                .execution_options(synchronize_session=False)
            )
        )
        if closed == 1 and on_close is not None:
            on_close(session)
        session.commit()
        if closed == 1:
            return True
        still_open = session.execute(
            select(col(WorkRound.open_job)).where(col(WorkRound.id) == round_id)
        ).scalar_one_or_none()
        return None if still_open is not None else False


@dataclass(frozen=True)
class RoundTotals:
    shards: int
    done: int
    leads: int
    changes: int
    workers: int


def round_totals(session: Session, round_id: int) -> RoundTotals:
    """Shards, leads and stage changes of a whole round, across every worker that took part."""
    rows = session.execute(
        select(col(WorkShard.status), col(WorkShard.claimed_by), col(WorkShard.leads), col(WorkShard.changes)).where(
            col(WorkShard.round_id) == round_id
        )
    ).all()
    done = [r for r in rows if r.status == ShardStatus.done.value]
    return RoundTotals(
        shards=len(rows),
        done=len(done),
        leads=sum(r.leads for r in done),
        changes=sum(r.changes for r in done),
        workers=len({r.claimed_by for r in done}),
    )
