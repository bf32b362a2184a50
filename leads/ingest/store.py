"""Storing a page of activity: upsert leads, insert events once, quarantine the rest, move the cursor.

All of it happens in the caller's transaction, so a page and its cursor commit together: a run
that dies midway resumes at the last committed page, and re-ingesting a page is a no-op because
(source, source_id) is unique.

Ingest is the hot path (hundreds of thousands of events a second from a file), so the activity
rows go in with one prepared `executemany` and no RETURNING; what the new rows change on their
leads (last activity, unsubscribe, bounce, due for requalify) is then worked out by the database
from the rows of this page alone (their ids are above the largest id before the insert).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from leadflow.leads.db.bulkload import BULK_LOAD, activity_rows
from leadflow.leads.db.models import (
    EVERY_EMAIL,
    Activity,
    ActivityType,
    ConnectorCursor,
    Lead,
    Quarantine,
    Suppression,
    SuppressionReason,
    utcnow,
)
from leadflow.leads.db.sql import upsert_insert
from leadflow.leads.ingest.records import (
    PROFILE_FIELDS,
    ActivityRecord,
    ProfileRecord,
    Rejected,
    as_columns,
    properties_json,
)

# The catch-up reads the whole lead index when the table holds at most this many rows per touched lead;
# otherwise it looks each lead up. Measured on the build machine: 0.14 us an index entry against 5.6 us
# a lead looked up (the lead's update itself, 3.6 us, is paid either way).
SCAN_ROWS_PER_LEAD = 40
CHUNK = 2000  # values per IN (...) list: well under SQLite's and PostgreSQL's parameter limits
_LEAD = Lead.__table__
_ACTIVITY = Activity.__table__
_SUPPRESSION = Suppression.__table__
SQLITE_CACHE_KIB = 256 * 1024
_ACTIVITY_COLUMNS = ("lead_id", "type", "occurred_at", "source", "source_id", "target", "properties", "ingested_at")


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    duplicates: int
    new_leads: int
    quarantined: int
    profiles: int = 0


@dataclass
class LeadCache:
    """What one ingest run already knows about leads, so each page does not ask again.

    Lives no longer than the run and is dropped if a page fails: an id learnt inside a
    transaction that rolled back must not be used.
    """

    ids: dict[str, int] = field(default_factory=dict)
    profiles: dict[int, dict[str, Any]] = field(default_factory=dict)  # each lead's profile as last read or written
    touched: set[str] = field(default_factory=set)  # emails of the run's stored pages (new activity or duplicates)

    def touched_leads(self) -> list[int]:
        return [self.ids[email] for email in self.touched]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lead_ids_by_email(session: Session, emails: Sequence[str]) -> dict[str, int]:
    """The ids of the leads with these emails; a driver-level statement per `CHUNK` (a big run asks for
    tens of thousands, where building each statement in SQLAlchemy cost more than running it)."""
    found: dict[str, int] = {}
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    with closing(connection.connection.cursor()) as cursor:
        for chunk in _chunks(list(emails)):
            if postgres:
                cursor.execute("SELECT email, id FROM lead WHERE email = ANY(%s)", (list(chunk),))
            else:
                cursor.execute(f"SELECT email, id FROM lead WHERE email IN ({', '.join('?' * len(chunk))})", chunk)
            found.update(cursor.fetchall())
    return found


def store_batch(
    *,
    session: Session,
    source: str,
    records: Sequence[ActivityRecord],
    rejected: Sequence[Rejected] = (),
    cursor: tuple[str, dict[str, Any]] | None = None,
    profiles: Sequence[ProfileRecord] = (),
    cache: LeadCache | None = None,
    defer_latest: bool = False,
) -> BatchResult:
    """Store one page of a source; the caller commits. `cursor` is (stream, value) to save with it.

    `profiles` are CRM records that only describe leads; their CRM id is kept in `lead.crm_ids[source]`.
    With `defer_latest`, the leads' last activity time and requalify mark are left to
    `apply_lead_activity` at the end of the run (see `defer_lead_activity`); unsubscribes and
    bounces always reach their leads in the page's own transaction.
    """
    cache = cache if cache is not None else LeadCache()
    columns = as_columns(records)
    emails = set(columns[1])
    ids, created, updated = _upsert_leads(session, source, columns, emails, profiles, cache)
    inserted = _insert_activity(session, source, columns, ids, defer_latest=defer_latest) if emails else 0
    if defer_latest and inserted:
        cache.touched |= emails
    if rejected:
        session.connection().execute(
            insert(Quarantine.__table__),
            [
                {
                    "source": source,
                    "location": r.location[:600],
                    "reason": r.reason,
                    # PostgreSQL text cannot hold NUL, and a corrupt line must not block its source.
                    "detail": r.detail.replace("\x00", "\ufffd")[:2000],
                    "raw": r.raw.replace("\x00", "\ufffd"),
                    "created_at": utcnow(),
                }
                for r in rejected
            ],
        )
    if cursor is not None:
        save_cursor(session, source=source, stream=cursor[0], value=cursor[1])
    return BatchResult(
        inserted=inserted,
        duplicates=len(columns[0]) - inserted,
        new_leads=created,
        quarantined=len(rejected),
        profiles=updated,
    )


def _upsert_leads(
    session: Session,
    source: str,
    columns: Sequence[Sequence[Any]],
    emails: set[str],
    profiles: Sequence[ProfileRecord],
    cache: LeadCache,
) -> tuple[dict[str, int], int, int]:
    """Every email (`emails`: those of the records' `columns`, and those of `profiles`) gets a lead;
    profile fields that records carry are filled in, latest first.

    Returns (ids by email, leads created, existing leads whose profile or CRM id changed).
    """
    fields: dict[str, dict[str, Any]] = {}
    carried = columns[6]  # mostly None: only the records that carry a profile are visited
    for email, profile in zip(compress(columns[1], carried), filter(None, carried), strict=True):
        fields.setdefault(email, {}).update(profile)
    crm_ids: dict[str, str] = {}
    for profile in profiles:
        merged = fields.setdefault(profile.email, {})
        if profile.profile:
            merged.update(profile.profile)
        if profile.crm_id is not None:
            crm_ids[profile.email] = profile.crm_id
    known = cache.ids
    emails = emails.union(fields) if profiles else emails  # records' profiles are of their own emails
    unknown = list(emails.difference(known))
    if unknown:
        known.update(lead_ids_by_email(session, unknown))
    missing = [e for e in unknown if e not in known]
    now = utcnow()
    if missing:
        _insert_leads(session, source, missing, fields, crm_ids, now)
        known.update(lead_ids_by_email(session, missing))
        for e in missing:
            cache.profiles[known[e]] = dict(fields.get(e, {}))
    created = set(missing)
    changed = _update_profiles(session, fields, created, cache, now)
    changed |= _update_crm_ids(session, source, crm_ids, created, known)
    return known, len(missing), len(changed)


_NEW_LEAD_DEFAULTS = {"fit_score": 0.0, "engagement_score": 0.0, "score": 0.0, "stage": "suspect"}


def _insert_leads(
    session: Session,
    source: str,
    emails: Sequence[str],
    fields: dict[str, dict[str, Any]],
    crm_ids: dict[str, str],
    now: datetime,
) -> None:
    """New leads with their profile fields and CRM id (an email another writer just added is left alone)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        blank = dict.fromkeys(PROFILE_FIELDS)
        rows = [
            {
                **blank,
                **fields.get(e, {}),
                "email": e,
                "crm_ids": {source: crm_ids[e]} if e in crm_ids else {},
                "created_at": now,
                "updated_at": now,
                "rescore_at": now,
            }
            for e in emails
        ]
        for chunk in _chunks(rows):
            connection.execute(
                upsert_insert(session, _LEAD).on_conflict_do_nothing(index_elements=["email"]), list(chunk)
            )
        return
    # SQLite, the bulk path: plain tuples of the fields the leads carry, one prepared statement per set of
    # fields (a page's new leads mostly share one), and what every new lead starts with written as literals.
    # Binding only what varies halved the statement's cost (50,000 leads: 0.18 s instead of 0.26).
    stamp = _literal(now.isoformat(" ", "microseconds"))
    constants = {
        **{name: _sql_value(value) for name, value in _NEW_LEAD_DEFAULTS.items()},
        "created_at": stamp,
        "updated_at": stamp,
        "rescore_at": stamp,
    }
    groups: dict[tuple[tuple[str, ...], bool], list[tuple[Any, ...]]] = {}
    for e in emails:
        profile = fields.get(e) or {}
        crm = e in crm_ids
        row = (e, *profile.values(), properties_json({source: crm_ids[e]})) if crm else (e, *profile.values())
        groups.setdefault((tuple(profile), crm), []).append(row)
    for (names, crm), values in groups.items():
        unknown = set(names).difference(PROFILE_FIELDS)
        if unknown:  # the names go into the statement: only the lead's own columns may
            raise ValueError(f"not lead profile fields: {sorted(unknown)}")
        bound = ["email", *names, *(["crm_ids"] if crm else [])]
        literal = {**constants, **({} if crm else {"crm_ids": _literal("{}")})}
        sql = (
            f"INSERT INTO lead ({', '.join([*bound, *literal])})"
            f" VALUES ({', '.join(['?'] * len(bound) + list(literal.values()))})"
            " ON CONFLICT (email) DO NOTHING"
        )
        connection.exec_driver_sql(sql, values)


def _sql_value(value: float | str) -> str:
    return _literal(value) if isinstance(value, str) else repr(float(value))


def _update_profiles(
    session: Session, fields: dict[str, dict[str, Any]], created: set[str], cache: LeadCache, now: datetime
) -> set[str]:
    """Write the profile fields that differ from the lead's; one statement per set of fields.

    A record that repeats what the lead already says changes nothing (and does not make it due).
    """
    pending = {cache.ids[e]: (e, values) for e, values in fields.items() if values and e not in created}
    unknown = [lead_id for lead_id in pending if lead_id not in cache.profiles]
    names = list(PROFILE_FIELDS)
    for chunk in _chunks(unknown):
        rows = session.execute(select(_LEAD.c.id, *(_LEAD.c[n] for n in names)).where(_LEAD.c.id.in_(chunk)))
        for lead_id, *current in rows:
            cache.profiles[lead_id] = {n: v for n, v in zip(names, current, strict=True) if v is not None}
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    changed: set[str] = set()
    for lead_id, (email, values) in pending.items():
        known = cache.profiles.setdefault(lead_id, {})
        if all(known.get(k, _UNSET) == v for k, v in values.items()):
            continue
        known.update(values)
        columns = tuple(sorted(values))
        by_columns.setdefault(columns, []).append({"lid": lead_id, **{f"v_{k}": values[k] for k in columns}})
        changed.add(email)
    for columns, rows in by_columns.items():
        # A changed profile can change fit and BANT: the lead is due for requalification.
        stmt = (
            update(_LEAD)
            .where(_LEAD.c.id == bindparam("lid"))
            .values({**{k: bindparam(f"v_{k}") for k in columns}, "updated_at": now, "rescore_at": now})
        )
        session.connection().execute(stmt, rows)
    return changed


_UNSET = object()


def _update_crm_ids(
    session: Session, source: str, crm_ids: dict[str, str], created: set[str], ids: dict[str, int]
) -> set[str]:
    """Keep each lead's id in this source's CRM under `crm_ids[source]`, merged with other sources' ids."""
    pending = {ids[e]: (e, crm_id) for e, crm_id in crm_ids.items() if e not in created}
    if not pending:
        return set()
    current: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(list(pending)):
        current.update(session.execute(select(Lead.id, Lead.crm_ids).where(Lead.id.in_(chunk))).all())
    rows = []
    changed: set[str] = set()
    for lead_id, (email, crm_id) in pending.items():
        existing = dict(current.get(lead_id) or {})
        if existing.get(source) != crm_id:
            existing[source] = crm_id
            rows.append({"lid": lead_id, "v_crm_ids": existing})
            changed.add(email)
    if rows:
        stmt = update(_LEAD).where(_LEAD.c.id == bindparam("lid")).values(crm_ids=bindparam("v_crm_ids"))
        session.connection().execute(stmt, rows)
    return changed


def _insert_activity(
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
    else:
        ingested, times = ingested_at, map(datetime.fromisoformat, times)
    # The lead ids in one pass before the insert, not one lookup between each row's steps: interleaved with
    # SQLite's work, every lookup missed the CPU caches (1 M rows: 0.3 s more).
    lead_ids = list(map(ids.__getitem__, emails))
    values = zip(lead_ids, kinds, times, source_ids, targets, props, strict=False)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    # The source and the page's time are the same for every row: written into the statement as literals,
    # not bound on every row.
    constants = {"source": _literal(source), "ingested_at": _literal(str(ingested))}
    if mark == "%s":  # psycopg reads % as the start of a placeholder
        constants = {k: v.replace("%", "%%") for k, v in constants.items()}
    placeholders = ", ".join(constants.get(c, mark) for c in _ACTIVITY_COLUMNS)
    sql = (
        f"INSERT INTO activity ({', '.join(_ACTIVITY_COLUMNS)}) VALUES ({placeholders})"
        " ON CONFLICT (source, source_id) DO NOTHING"
    )
    with closing(connection.connection.cursor()) as cursor:
        cursor.executemany(sql, values)
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


def _literal(text: str) -> str:
    """A SQL string literal (quotes doubled; NUL, which neither database stores in text, refused)."""
    if "\x00" in text:
        raise ValueError("a source name cannot contain NUL")
    return "'" + text.replace("'", "''") + "'"


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
        delete(ConnectorCursor).where(ConnectorCursor.source == source, ConnectorCursor.stream == DEFERRED_STREAM)
    )


def mark_due(session: Session, lead_ids: Sequence[int]) -> None:
    """Ask the next incremental requalify to look at these leads (new activity, new profile)."""
    if lead_ids:
        now = utcnow()
        session.connection().execute(
            update(_LEAD).where(_LEAD.c.id == bindparam("lid")).values(rescore_at=now),
            [{"lid": lead_id} for lead_id in lead_ids],
        )


def load_cursor(session: Session, *, source: str, stream: str) -> dict[str, Any] | None:
    row = session.execute(
        select(ConnectorCursor.value).where(ConnectorCursor.source == source, ConnectorCursor.stream == stream)
    ).scalar_one_or_none()
    return dict(row) if row is not None else None


def save_cursor(session: Session, *, source: str, stream: str, value: dict[str, Any]) -> None:
    stmt = upsert_insert(session, ConnectorCursor).values(
        source=source, stream=stream, value=value, updated_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "stream"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
    )
