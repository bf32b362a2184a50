"""Named leases: steps that must have one writer at a time (reading a source, enrolling leads in nurture,
queueing handoffs), across processes and machines, and freed promptly when their holder dies.

A lease row records its holder (the run), the holder's process (host, pid, pid scope, start time, see
leads.processes) and a heartbeat: while the lease is held a background thread moves `heartbeat_at` to
now and `expires_at` to now + the staleness limit, every `HEARTBEAT`. Another run takes the lease over

- at once when the holder's process is on this machine and no longer runs (killed, crashed, rebooted);
- when its heartbeat is older than the staleness limit (`expires_at` has passed) and the holder is not
  a process this machine can see running: a holder on another machine that died or lost the database.

A holder that runs keeps its lease however long it works. Taking over is a compare-and-set on the
holder and heartbeat that were seen, so of two runs that find a dead holder only one gets the lease,
and a holder that beat in between keeps it. Timestamps are wall-clock (`utcnow`) of the machines
involved: across machines their clocks must agree to well within the staleness limit (NTP does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Engine, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, Session
from sqlmodel import col

from leadflow.leads.db.models import WorkLease, utcnow
from leadflow.leads.db.sql import rowcount
from leadflow.leads.work.processes import ProcessId, is_running, this_process, visible

# A dead holder on another machine is taken over at most STALE_AFTER after its last beat: 75 s, with
# three beats that may be missed (a slow database, a busy machine) before a live holder looks dead.
HEARTBEAT = timedelta(seconds=20)
STALE_AFTER = timedelta(seconds=75)

Clock = Callable[[], datetime]
Notify = Callable[[str], None]


class LeaseState(StrEnum):
    free = "free"
    alive = "alive"  # its process runs on this machine, or (elsewhere) its heartbeat is fresh
    dead = "dead"  # its process was on this machine and is gone: taken over at once
    stale = "stale"  # no heartbeat within the staleness limit: taken over at once


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str | None
    host: str | None
    pid: int | None
    since: datetime | None
    heartbeat_at: datetime | None
    expires_at: datetime | None
    process: ProcessId | None

    def state(self, now: datetime) -> LeaseState:
        if self.holder is None:
            return LeaseState.free
        running = is_running(self.process) if self.process is not None else None
        if running is not None:
            return LeaseState.alive if running else LeaseState.dead
        if self.expires_at is None or self.expires_at < now:
            return LeaseState.stale
        return LeaseState.alive

    @property
    def here(self) -> bool:
        """Its process is one this machine can see (so `state` comes from the process, not the heartbeat)."""
        return self.process is not None and visible(self.process)

    def describe(self, now: datetime) -> str:
        """`run R (pid P on host H, since T, last heartbeat N s ago)`, for logs and messages."""
        where = f"pid {self.pid} on host {self.host}" if self.pid is not None else "an unknown process"
        beat = f"{(now - self.heartbeat_at).total_seconds():.0f} s ago" if self.heartbeat_at else "never"
        since = f"{self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "?"
        return f"run {self.holder} ({where}, since {since}, last heartbeat {beat})"


class LeaseBusy(RuntimeError):
    """The named step is held by a live run for longer than this run would wait."""


class LeaseNotFound(LookupError):
    """No lease of that name was ever taken."""


class LeaseHeld(RuntimeError):
    """An admin asked to release a lease whose holder is alive (without --force)."""

    def __init__(self, lease: LeaseInfo) -> None:
        super().__init__(lease.name)
        self.lease = lease


def _info(row: WorkLease) -> LeaseInfo:
    process = (
        ProcessId(row.host or "", row.pid, row.pid_scope, row.pid_start)
        if row.pid is not None and row.pid_scope is not None
        else None
    )
    return LeaseInfo(
        row.name, row.holder, row.host, row.pid, row.acquired_at, row.heartbeat_at, row.expires_at, process
    )


def _read(engine: Engine, name: str) -> LeaseInfo | None:
    with Session(engine) as session:
        row = session.get(WorkLease, name)
        return _info(row) if row is not None else None


def read_leases(engine: Engine) -> list[LeaseInfo]:
    """Every lease ever taken, by name (free ones too)."""
    with Session(engine) as session:
        return [_info(row) for row in session.execute(select(WorkLease).order_by(col(WorkLease.name))).scalars()]


def _same(column: Mapped[Any], value: object) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _seen(info: LeaseInfo) -> list[ColumnElement[bool]]:
    """The row still says what we read: same holder, same last heartbeat (compare-and-set)."""
    return [
        col(WorkLease.name) == info.name,
        _same(col(WorkLease.holder), info.holder),
        _same(col(WorkLease.heartbeat_at), info.heartbeat_at),
    ]


def try_acquire(
    engine: Engine,
    name: str,
    *,
    holder: str,
    process: ProcessId | None = None,
    stale_after: timedelta = STALE_AFTER,
    clock: Clock = utcnow,
) -> tuple[bool, LeaseInfo]:
    """Take the lease if it is free, ours, or its holder is dead or stale. Returns (taken, what was seen)."""
    seen = _read(engine, name)
    if seen is None:
        try:
            with Session(engine) as session:
                session.execute(insert(WorkLease).values(name=name))
                session.commit()
        except IntegrityError:  # another run created it between our look and our insert
            pass
        seen = _read(engine, name)
        assert seen is not None
    now = clock()
    if seen.holder != holder and seen.state(now) is LeaseState.alive:
        return False, seen
    me = process or this_process()
    # Separate transactions for the look and the write: on SQLite a read that turns into a write fails
    # at once if another process wrote in between; the compare-and-set below makes the pair safe.
    ours = seen.holder == holder
    where = [col(WorkLease.name) == name, col(WorkLease.holder) == holder] if ours else _seen(seen)
    with Session(engine) as session:
        taken = rowcount(
            session.execute(
                update(WorkLease)
                .where(*where)
                .values(
                    holder=holder,
                    acquired_at=seen.since if ours else now,
                    heartbeat_at=now,
                    expires_at=now + stale_after,
                    host=me.host,
                    pid=me.pid,
                    pid_scope=me.scope,
                    pid_start=me.started,
                )
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
    return taken == 1, seen


def acquire_lease(
    engine: Engine,
    name: str,
    *,
    holder: str,
    process: ProcessId | None = None,
    stale_after: timedelta = STALE_AFTER,
    clock: Clock = utcnow,
) -> bool:
    """Take the lease if it is free, ours, or its holder is dead or stale (see the module's docstring)."""
    return try_acquire(engine, name, holder=holder, process=process, stale_after=stale_after, clock=clock)[0]


def beat(
    engine: Engine, name: str, *, holder: str, stale_after: timedelta = STALE_AFTER, clock: Clock = utcnow
) -> bool:
    """Say the holder still lives; False when the lease is no longer its own (released or taken over)."""
    now = clock()
    with Session(engine) as session:
        kept = rowcount(
            session.execute(
                update(WorkLease)
                .where(col(WorkLease.name) == name, col(WorkLease.holder) == holder)
                .values(heartbeat_at=now, expires_at=now + stale_after)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
    return kept == 1


def _free(session: Session, where: list[ColumnElement[bool]]) -> int:
    return rowcount(
        session.execute(
            update(WorkLease)
            .where(*where)
            .values(
                holder=None, expires_at=None, heartbeat_at=None, host=None, pid=None, pid_scope=None, pid_start=None
            )
            .execution_options(synchronize_session=False)
        )
    )


def release_lease(engine: Engine, name: str, *, holder: str) -> None:
    """The holder lets go (a lease that is not its own any more is left alone)."""
    with Session(engine) as session:
        _free(session, [col(WorkLease.name) == name, col(WorkLease.holder) == holder])
        session.commit()


def release_for_admin(engine: Engine, name: str, *, force: bool = False, clock: Clock = utcnow) -> LeaseInfo:
    """Free a lease by name, whoever holds it; refuses a live holder unless `force`. Returns what it freed."""
    seen = _read(engine, name)
    if seen is None:
        raise LeaseNotFound(name)
    if seen.holder is None:
        return seen
    if seen.state(clock()) is LeaseState.alive and not force:
        raise LeaseHeld(seen)
    with Session(engine) as session:
        freed = _free(session, _seen(seen))
        session.commit()
    if freed != 1:  # its holder beat or let go in between: look again
        return release_for_admin(engine, name, force=force, clock=clock)
    return seen


class _Heartbeat(threading.Thread):
    """Beats every `every` while the lease is held; stops for good when the lease is lost."""

    def __init__(
        self, engine: Engine, name: str, holder: str, every: timedelta, stale_after: timedelta, clock: Clock,
        notify: Notify,
    ) -> None:  # fmt: skip
        super().__init__(name=f"lease heartbeat {name}", daemon=True)
        self.engine, self.lease, self.holder = engine, name, holder
        self.every, self.stale_after, self.clock, self.notify = every, stale_after, clock, notify
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.done.wait(self.every.total_seconds()):
            try:
                kept = beat(self.engine, self.lease, holder=self.holder, stale_after=self.stale_after, clock=self.clock)
            except DBAPIError as exc:  # the database is away for a moment: the next beat tries again
                self.notify(f"lease {self.lease}: heartbeat failed ({type(exc).__name__}); trying again")
                continue
            if not kept and not self.done.is_set():  # (after the block ended, the lease was let go on purpose)
                self.lost = True
                self.notify(
                    f"lease {self.lease} is no longer held by this run (released by an admin, or taken over after "
                    "its heartbeat went stale); another run may now do the same step"
                )
                return


@dataclass
class Lease:
    """What `holding` yields: `lost` turns True if the lease was released or taken over while held."""

    name: str
    holder: str
    _beat: _Heartbeat

    @property
    def lost(self) -> bool:
        return self._beat.lost


def _ignore(_: str) -> None:
    pass


@contextmanager
def holding(
    engine: Engine,
    name: str,
    *,
    holder: str,
    wait: float = 0.0,
    poll: float = 0.25,
    heartbeat: timedelta = HEARTBEAT,
    stale_after: timedelta = STALE_AFTER,
    process: ProcessId | None = None,
    notify: Notify = _ignore,
    clock: Clock = utcnow,
) -> Iterator[Lease]:
    """Run the block as the lease's only holder, beating its heartbeat; wait up to `wait` seconds for a
    live holder to finish (a dead or stale one is taken over as soon as it is seen), else LeaseBusy."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        taken, seen = try_acquire(engine, name, holder=holder, process=process, stale_after=stale_after, clock=clock)
        if taken:
            break
        if time.monotonic() >= deadline:
            raise LeaseBusy(
                f"{name} is held by {seen.describe(clock())}, which is alive; waited {wait:.0f} s. `leadflow ops "
                f"leases` shows it; if that run hangs, stop its process or run "
                f"`leadflow ops leases --release {name} --force`"
            )
        if not told:
            notify(f"{name} is held by {seen.describe(clock())}; waiting up to {wait:.0f} s for it")
            told = True
        time.sleep(poll)
    if seen.holder not in (None, holder):
        notify(f"took over {name} from {seen.describe(clock())}, which is {seen.state(clock()).value}")
    pulse = _Heartbeat(engine, name, holder, heartbeat, stale_after, clock, notify)
    pulse.start()
    try:
        yield Lease(name, holder, pulse)
    finally:
        pulse.done.set()
        pulse.join(timeout=60)  # a beat waits for the database at most its busy timeout; never hang a run here
        release_lease(engine, name, holder=holder)
