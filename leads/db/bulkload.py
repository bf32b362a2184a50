"""Bulk-load mode for SQLite: the activity table's (lead_id, occurred_at) index set aside for a big ingest.

Maintaining that index row by row is the most expensive part of storing an event (the events
of one page belong to leads all over the index, so every insert lands on a different page of
it); building it once over the whole table sorts, which costs a fraction of that. So when a
run is about to add many rows relative to what the table holds, the index is dropped at the
start of the run and built again at its end: what PostgreSQL's "Populating a Database" guidance
recommends (remove indexes, load, recreate them), applied only where it pays and only on SQLite.

In the same mode the run's pages are stored through one connection with SQLite's foreign-key
check off (`page_connection`): checking `activity.lead_id` against `lead` on every row costs
about a third of the insert.

Crash safety: the drop is its own committed transaction, and the index is built again with
`CREATE INDEX IF NOT EXISTS` when the run ends, fails, or — if the process was killed — at the
start of the next ingest run and on every `leadflow.leads.db.engine.upgrade`. Readers during the run see the
same rows, only through a slower plan. PostgreSQL is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

LEAD_INDEX = "ix_activity_lead_occurred"
_CREATE = f"CREATE INDEX IF NOT EXISTS {LEAD_INDEX} ON activity (lead_id, occurred_at)"
# Where building the index afresh starts to pay, as new rows per row already in the table. Keeping it
# up to date costs more per new row the bigger the index (each page's commit writes every index page
# its rows touched, and in a big index that is nearly all of them); building it costs about the same
# per table row. As measured (BENCHMARKS.md, ingest: the bulk-load rule), the share falls from a fifth
# at a million rows to a tenth at five million (linearly between, a tenth beyond); below MIN_ROWS either
# way takes well under a second.
SMALL_TABLE, BIG_TABLE = 1_000_000, 5_000_000
SMALL_TABLE_RATIO, BIG_TABLE_RATIO = 0.2, 0.1
MIN_ROWS = 200_000


def bulk_ratio(existing_rows: int) -> float:
    """New rows per existing row from which dropping and building the lead index pays (see above)."""
    if existing_rows <= SMALL_TABLE:
        return SMALL_TABLE_RATIO
    if existing_rows >= BIG_TABLE:
        return BIG_TABLE_RATIO
    share = (existing_rows - SMALL_TABLE) / (BIG_TABLE - SMALL_TABLE)
    return SMALL_TABLE_RATIO + share * (BIG_TABLE_RATIO - SMALL_TABLE_RATIO)


def worth_dropping(*, existing_rows: int, new_rows: int) -> bool:
    """Whether building the lead index afresh is cheaper than keeping it up to date for `new_rows`."""
    return new_rows >= MIN_ROWS and new_rows >= bulk_ratio(existing_rows) * existing_rows


# Building the index sorts every row's (lead_id, occurred_at). SQLite's sorter keeps as much in memory
# as the page cache allows: with ingest's 256 MB it sorts in one run; held to a few MB it sorts runs of
# them on helper threads and merges them, which is faster (BENCHMARKS.md, ingest).
SORT_CACHE_KIB = 8 * 1024
BULK_CACHE_KIB = 16 * 1024
BULK_LOAD = "leadflow_bulk_load"  # the key in a connection's `info` while a bulk run stores through it
SORT_THREADS = max(1, min(os.cpu_count() or 1, 4))


def restore_lead_index(connection: Connection) -> None:
    """Build the lead index if a bulk load left it missing (a no-op when it exists, or not on SQLite)."""
    if connection.dialect.name != "sqlite" or not _has_activity(connection) or _has_lead_index(connection):
        return
    with _pragmas(connection, cache_size=-SORT_CACHE_KIB, threads=SORT_THREADS):
        connection.exec_driver_sql(_CREATE)


@contextmanager
def _pragmas(connection: Connection, **settings: int) -> Iterator[None]:
    """SQLite settings for the block; afterwards they are what they were (the connection is a pool's)."""
    before = {name: int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()) for name in settings}
    for name, value in settings.items():
        connection.exec_driver_sql(f"PRAGMA {name}={value}")
    try:
        yield
    finally:
        for name, value in before.items():
            connection.exec_driver_sql(f"PRAGMA {name}={value}")


def _has_lead_index(connection: Connection) -> bool:
    row = connection.exec_driver_sql(f"SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = '{LEAD_INDEX}'")
    return row.first() is not None


def _has_activity(connection: Connection) -> bool:
    row = connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'activity'")
    return row.first() is not None


def activity_rows(connection: Connection) -> int:
    """About how many rows the activity table holds (its largest id: free, and close enough here)."""
    return int(connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM activity").scalar_one())


class SetAside:
    """The lead index of one bulk run, dropped; `restore()` builds it again (once)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.restored = False

    def restore(self) -> None:
        if not self.restored:
            with self.engine.begin() as connection:
                restore_lead_index(connection)
            self.restored = True


@contextmanager
def lead_index_set_aside(engine: Engine, *, new_rows: int) -> Iterator[SetAside | None]:
    """Within the block, the lead index is dropped if that pays for `new_rows` on SQLite, and built again
    after it whatever happens (or earlier, by `restore()`). Yields the `SetAside`, or None when the
    index stays. A missing index (a killed bulk run) is built before deciding."""
    if engine.dialect.name != "sqlite":
        yield None
        return
    with engine.begin() as connection:
        restore_lead_index(connection)
        drop = worth_dropping(existing_rows=activity_rows(connection), new_rows=new_rows)
        if drop:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {LEAD_INDEX}")
    set_aside = SetAside(engine) if drop else None
    try:
        yield set_aside
    finally:
        if set_aside is not None:
            set_aside.restore()


@contextmanager
def page_connection(engine: Engine) -> Iterator[Connection]:
    """The connection a bulk run stores its pages through: SQLite's foreign-key check off, a small cache.

    Looking up `activity.lead_id` in `lead` for every inserted row costs a third of the insert
    (BENCHMARKS.md, ingest). The check cannot fail here: every lead id a run stores
    comes from the lead table itself (read or inserted by the run), and leadflow never deletes a lead.
    With the lead index set aside, rows and the unique index are only appended to, and a page cache of
    `BULK_CACHE_KIB` stores rows faster than ingest's usual 256 MB: `connection.info[BULK_LOAD]` tells
    `leadflow.leads.ingest.activity_insert` to leave it so.
    Both are as before when the connection goes back to the pool (SQLite only changes the check
    outside a transaction, hence the commits around it).
    """
    with engine.connect() as connection, _pragmas(connection, foreign_keys=0, cache_size=-BULK_CACHE_KIB):
        connection.commit()
        connection.info[BULK_LOAD] = True
        try:
            yield connection
        finally:
            connection.info.pop(BULK_LOAD, None)
            connection.rollback()  # the settings go back outside a transaction
