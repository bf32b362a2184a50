"""The leads of a page of activity: found by email, created when new, their profile and CRM ids kept current.

All of it in the caller's transaction. `LeadCache` remembers, for one run, what is already known,
so each page does not ask the database again.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import PROFILE_FIELDS, Lead, utcnow
from leadflow.leads.db.sql import chunks, sql_literal, upsert_insert
from leadflow.leads.ingest.records import ProfileRecord
from leadflow.leads.ingest.rows import properties_json

_LEAD = table_of(Lead)


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


def lead_ids_by_email(session: Session, emails: Sequence[str]) -> dict[str, int]:
    """The ids of the leads with these emails; a driver-level statement per `CHUNK` (a big run asks for
    tens of thousands, where building each statement in SQLAlchemy cost more than running it)."""
    found: dict[str, int] = {}
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    with closing(connection.connection.cursor()) as cursor:
        for chunk in chunks(list(emails)):
            if postgres:
                cursor.execute("SELECT email, id FROM lead WHERE email = ANY(%s)", (list(chunk),))
            else:
                cursor.execute(f"SELECT email, id FROM lead WHERE email IN ({', '.join('?' * len(chunk))})", chunk)
            found.update(cursor.fetchall())
    return found


def upsert_leads(
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


_NEW_LEAD_DEFAULTS: dict[str, float | str] = {
    "fit_score": 0.0,
    "engagement_score": 0.0,
    "score": 0.0,
    "stage": "suspect",
}


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
        for chunk in chunks(rows):
            connection.execute(
                upsert_insert(session, _LEAD).on_conflict_do_nothing(index_elements=["email"]), list(chunk)
            )
        return
    # SQLite, the bulk path: plain tuples of the fields the leads carry, one prepared statement per set of
    # fields (a page's new leads mostly share one), and what every new lead starts with written as literals.
    # Binding only what varies makes the statement a third cheaper (BENCHMARKS.md, ingest).
    stamp = sql_literal(now.isoformat(" ", "microseconds"))
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
        literal = {**constants, **({} if crm else {"crm_ids": sql_literal("{}")})}
        sql = (
            f"INSERT INTO lead ({', '.join([*bound, *literal])})"
            f" VALUES ({', '.join(['?'] * len(bound) + list(literal.values()))})"
            " ON CONFLICT (email) DO NOTHING"
        )
        connection.exec_driver_sql(sql, values)


def _sql_value(value: float | str) -> str:
    return sql_literal(value) if isinstance(value, str) else repr(float(value))


def _update_profiles(
    session: Session, fields: dict[str, dict[str, Any]], created: set[str], cache: LeadCache, now: datetime
) -> set[str]:
    """Write the profile fields that differ from the lead's; one statement per set of fields.

    A record that repeats what the lead already says changes nothing (and does not make it due).
    """
    pending = {cache.ids[e]: (e, values) for e, values in fields.items() if values and e not in created}
    unknown = [lead_id for lead_id in pending if lead_id not in cache.profiles]
    names = list(PROFILE_FIELDS)
    for chunk in chunks(unknown):
        found = session.execute(select(_LEAD.c.id, *(_LEAD.c[n] for n in names)).where(_LEAD.c.id.in_(chunk)))
        for lead_id, *current in found:
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
    for columns, updates in by_columns.items():
        # A changed profile can change fit and BANT: the lead is due for requalification.
        stmt = (
            update(_LEAD)
            .where(_LEAD.c.id == bindparam("lid"))
            .values({**{k: bindparam(f"v_{k}") for k in columns}, "updated_at": now, "rescore_at": now})
        )
        session.connection().execute(stmt, updates)
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
    for chunk in chunks(list(pending)):
        query = select(_LEAD.c.id, _LEAD.c.crm_ids).where(_LEAD.c.id.in_(chunk))
        current.update(session.execute(query).tuples().all())
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


def mark_due(session: Session, lead_ids: Sequence[int]) -> None:
    """Ask the next incremental requalify to look at these leads (new activity, new profile)."""
    if lead_ids:
        now = utcnow()
        session.connection().execute(
            update(_LEAD).where(_LEAD.c.id == bindparam("lid")).values(rescore_at=now),
            [{"lid": lead_id} for lead_id in lead_ids],
        )
