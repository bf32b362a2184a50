"""The activity rows of a page: inserted once each, and what they change on their leads.

The rows go in with one prepared `executemany` and no RETURNING; what the new rows change on their
leads (last activity, unsubscribe, bounce, due for requalify) is then worked out by the database
from the rows of this page alone (their ids are above the largest id before the insert). A big run
may defer the leads' last activity times to its end (`defer_lead_activity`, `apply_lead_activity`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import closing
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.db.base import table_of
from leadflow.leads.db.bulkload import BULK_LOAD, activity_rows
from leadflow.leads.db.models import (
    EVERY_EMAIL,
    Activity,
    ActivityType,
    ConnectorCursor,
    Lead,
    Suppression,
    SuppressionReason,
    utcnow,
)
from leadflow.leads.db.sql import sql_literal, upsert_insert
from leadflow.leads.ingest.cursors import load_cursor, save_cursor

# The catch-up reads the whole lead index when the table holds at most this many rows per touched lead;
# otherwise it looks each lead up: an index entry read costs a small fraction of a lead looked up
# (BENCHMARKS.md, ingest: the catch-up).
SCAN_ROWS_PER_LEAD = 40
_LEAD = table_of(Lead)
_ACTIVITY = table_of(Activity)
_SUPPRESSION = table_of(Suppression)
SQLITE_CACHE_KIB = 256 * 1024
_ACTIVITY_COLUMNS = ("lead_id", "type", "occurred_at", "source", "source_id", "target", "properties", "ingested_at")


def insert_activity(
    session: Session, source: str, columns: Sequence[Sequence[Any]], ids: dict[str, int], *, defer_latest: bool
) -> int:
    """Insert the page's events, skipping (source, source_id) already stored; returns how many were new.

    The rows are bound straight from the columns (`zip` in C), through the driver's own cursor.
    """
    connection = session.connection()
    dialect = connection.dialect
    sqlite = dialect.name == "sqlite"
    ingested_at = utcnow()
    if sqlite and not connection.info.get(BULK_LOAD):
        # Room for the activity indexes in memory: inserts by lead land all over the (lead, time) index
        # (a bulk run has set that index aside, and its connection a small cache: leads.bulkload).
        connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    before = connection.execute(select(func.coalesce(func.max(_ACTIVITY.c.id), 0))).scalar_one()
    source_ids, emails, kinds, times, targets, props, _ = columns
    if sqlite:  # SQLite keeps datetimes as text in SQLAlchemy's format, which is the rows' form
        ingested: Any = ingested_at.isoformat(" ", "microseconds")
        occurred: Iterable[Any] = times
    else:
        ingested, occurred = ingested_at, map(datetime.fromisoformat, times)
    # The lead ids in one pass before the insert, not one lookup between each row's steps: interleaved with
    # SQLite's work, every lookup missed the CPU caches (BENCHMARKS.md, ingest).
    lead_ids = list(map(ids.__getitem__, emails))
    values = zip(lead_ids, kinds, occurred, source_ids, targets, props, strict=False)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    # The source and the page's time are the same for every row: written into the statement as literals,
    # not bound on every row.
    constants = {"source": sql_literal(source), "ingested_at": sql_literal(str(ingested))}
    if mark == "%s":  # psycopg reads % as the start of a placeholder
        constants = {k: v.replace("%", "%%") for k, v in constants.items()}
    placeholders = ", ".join(constants.get(c, mark) for c in _ACTIVITY_COLUMNS)
    sql = (
        f"INSERT INTO activity ({', '.join(_ACTIVITY_COLUMNS)}) VALUES ({placeholders})"
        " ON CONFLICT (source, source_id) DO NOTHING"
    )
    with closing(connection.connection.cursor()) as cursor:
        # The drivers (sqlite3, psycopg) take any iterable of rows; a list would copy every row first.
        cursor.executemany(sql, values)  # type: ignore[arg-type]
        changed = cursor.rowcount
    # This page's new rows: above the largest id before the insert, from this source, stamped with this page's time.
    new = and_(_ACTIVITY.c.id > before, _ACTIVITY.c.source == source, _ACTIVITY.c.ingested_at == ingested_at)
    if sqlite:  # sqlite3 sums the rows each execution changed; DO NOTHING changes none
        inserted = changed
    else:
        inserted = connection.execute(select(func.count()).select_from(_ACTIVITY).where(new)).scalar_one()
    if inserted:
        if not defer_latest:
            _set_latest(connection, new, ingested_at)
        _set_first(connection, new, set(kinds), source)
    return int(inserted)


def _set_latest(connection: Connection, new: Any, now: datetime) -> None:
    """Carry the newest of the `new` activity rows onto their leads (never moving the time back), and mark
    those leads due for requalification."""
    a = _ACTIVITY.c
    latest = select(a.lead_id, func.max(a.occurred_at).label("at")).where(new).group_by(a.lead_id).subquery()
    connection.execute(
        update(_LEAD)
        .where(_LEAD.c.id == latest.c.lead_id)
        .values(
            last_activity_at=case(
                (or_(_LEAD.c.last_activity_at.is_(None), _LEAD.c.last_activity_at < latest.c.at), latest.c.at),
                else_=_LEAD.c.last_activity_at,
            ),
            rescore_at=now,
        )
    )


def _set_first(connection: Connection, new: Any, types: set[ActivityType], source: str) -> None:
    """The first unsubscribe and the first bounce among the `new` rows, onto their leads (never later ones),
    and into the suppression log, which holds every opt-out whatever channel it came from (a lead already
    in it for all email keeps its first entry)."""
    a = _ACTIVITY.c
    for kind, column, reason in (
        (ActivityType.unsubscribe, _LEAD.c.unsubscribed_at, SuppressionReason.unsubscribed),
        (ActivityType.email_bounce, _LEAD.c.bounced_at, SuppressionReason.bounced),
    ):
        if kind not in types:
            continue
        first = (
            select(a.lead_id, func.min(a.occurred_at).label("at"))
            .where(new, a.type == kind.value)
            .group_by(a.lead_id)
            .subquery()
        )
        connection.execute(
            update(_LEAD)
            .where(_LEAD.c.id == first.c.lead_id, or_(column.is_(None), column > first.c.at))
            .values({column.key: first.c.at})
        )
        logged = select(
            _LEAD.c.email,
            _LEAD.c.id,
            literal(EVERY_EMAIL),
            literal(reason.value),
            literal(source[:100]),
            literal(f"{kind.value} activity from {source}"[:500]),
            first.c.at,
        ).join_from(first, _LEAD, _LEAD.c.id == first.c.lead_id)
        connection.execute(
            upsert_insert(connection, _SUPPRESSION)
            .from_select(
                ["email", "lead_id", "scope", "reason", "source", "detail", "created_at"],
                logged.where(first.c.at.is_not(None)),  # a WHERE: SQLite reads ON CONFLICT after a bare JOIN … ON
            )
            .on_conflict_do_nothing(index_elements=["email", "scope"])
        )


# The connector_cursor row that says a source's activity after some id is not yet on its leads.
DEFERRED_STREAM = "~lead-activity"


def defer_lead_activity(session: Session, *, source: str) -> int:
    """Start leaving the leads' last activity times to the end of a run; returns the activity id after
    which rows are pending.

    The mark is saved first and removed by `apply_lead_activity` in the transaction that catches
    the leads up, so a run that dies midway leaves it behind and the next run catches up from there.
    A big run updates each lead once instead of once per page.
    """
    marker = load_cursor(session, source=source, stream=DEFERRED_STREAM)
    if marker is not None:
        return int(marker["after_id"])
    after_id = int(session.execute(select(func.coalesce(func.max(_ACTIVITY.c.id), 0))).scalar_one())
    save_cursor(session, source=source, stream=DEFERRED_STREAM, value={"after_id": after_id})
    return after_id


# Moves a lead's last activity time forward to `n.at` (never back) and marks it due; `n` is the FROM.
_CATCH_UP = (
    "UPDATE lead SET last_activity_at = CASE WHEN lead.last_activity_at IS NULL"
    " OR lead.last_activity_at < n.at THEN n.at ELSE lead.last_activity_at END, rescore_at = ?"
)


def apply_lead_activity(session: Session, *, source: str, after_id: int, leads: Collection[int] | None = None) -> None:
    """Carry the source's activity stored after `after_id` onto its leads, and end the deferral.

    `leads`, when given, must include every lead with such activity (a run that started the
    deferral itself knows them): on SQLite the (lead_id, occurred_at) index then answers without
    grouping every new row by lead (which sorts them): read whole when the run's rows are most
    of the table, else lead by lead, each lead's newest new row first.
    """
    a = _ACTIVITY.c
    connection = session.connection()
    if leads is not None and connection.dialect.name == "sqlite":
        now = utcnow().isoformat(" ", "microseconds")
        if leads and activity_rows(connection) <= SCAN_ROWS_PER_LEAD * len(leads):
            # Most of the table is this run's: one pass over the lead index (covering, in lead order, no
            # sort) finds every lead's newest new row. It does not filter by source: a row another source
            # stored meanwhile is the lead's activity all the same.
            connection.exec_driver_sql(
                _CATCH_UP + " FROM (SELECT lead_id, max(occurred_at) AS at FROM activity"
                " WHERE id > ? GROUP BY lead_id) AS n WHERE lead.id = n.lead_id",
                (now, after_id),
            )
        elif leads:
            connection.exec_driver_sql(
                _CATCH_UP + " FROM (SELECT occurred_at AS at FROM activity"
                " WHERE lead_id = ? AND id > ? AND source = ? ORDER BY occurred_at DESC LIMIT 1) AS n"
                " WHERE lead.id = ?",
                [(now, lead_id, after_id, source, lead_id) for lead_id in sorted(leads)],
            )
    else:
        _set_latest(connection, and_(a.id > after_id, a.source == source), utcnow())
    session.execute(
        delete(ConnectorCursor).where(
            col(ConnectorCursor.source) == source, col(ConnectorCursor.stream) == DEFERRED_STREAM
        )
    )
