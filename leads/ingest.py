"""Storing a page of activity: upsert leads, insert events once, quarantine the rest, move the cursor.

All of it happens in the caller's transaction, so a page and its cursor commit together: a run
that dies midway resumes at the last committed page, and re-ingesting a page is a no-op because
(source, source_id) is unique.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from leads.models import Activity, ActivityType, ConnectorCursor, Lead, Quarantine, utcnow
from leads.records import PROFILE_FIELDS, ActivityRecord, Rejected
from leads.sql import upsert_insert

CHUNK = 500


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    duplicates: int
    new_leads: int
    quarantined: int


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lead_ids_by_email(session: Session, emails: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(list(emails)):
        found.update(session.execute(select(Lead.email, Lead.id).where(Lead.email.in_(chunk))).all())
    return found


def upsert_leads(session: Session, records: Sequence[ActivityRecord]) -> tuple[dict[str, int], int]:
    """Make sure every email has a lead; fill profile fields that records carry. Returns (ids, created)."""
    profiles: dict[str, dict[str, Any]] = {}
    for record in records:
        merged = profiles.setdefault(record.email, {})
        if record.profile:
            merged.update(record.profile)
    ids = lead_ids_by_email(session, list(profiles))
    missing = [email for email in profiles if email not in ids]
    now = utcnow()
    if missing:
        blank = dict.fromkeys(PROFILE_FIELDS)
        rows = [
            {**blank, **profiles[e], "email": e, "crm_ids": {}, "created_at": now, "updated_at": now} for e in missing
        ]
        for chunk in _chunks(rows):
            session.execute(
                upsert_insert(session, Lead).values(list(chunk)).on_conflict_do_nothing(index_elements=["email"])
            )
        ids.update(lead_ids_by_email(session, missing))
    to_update = [(email, fields) for email, fields in profiles.items() if fields and email not in missing]
    for email, fields in to_update:
        # A changed profile can change fit and BANT: the lead is due for requalification.
        session.execute(update(Lead).where(Lead.id == ids[email]).values(**fields, updated_at=now, rescore_at=now))
    return ids, len(missing)


def store_batch(
    *,
    session: Session,
    source: str,
    records: Sequence[ActivityRecord],
    rejected: Sequence[Rejected] = (),
    cursor: tuple[str, dict[str, Any]] | None = None,
) -> BatchResult:
    """Store one page of a source; the caller commits. `cursor` is (stream, value) to save with it."""
    ids, created = upsert_leads(session, records) if records else ({}, 0)
    rows = [
        {
            "lead_id": ids[r.email],
            "type": r.type.value,
            "occurred_at": r.occurred_at,
            "source": source,
            "source_id": r.source_id,
            "target": r.target,
            "properties": r.properties,
            "ingested_at": utcnow(),
        }
        for r in records
    ]
    inserted: list[tuple[int, str, datetime]] = []
    for chunk in _chunks(rows):
        stmt = (
            upsert_insert(session, Activity)
            .values(list(chunk))
            .on_conflict_do_nothing(index_elements=["source", "source_id"])
            .returning(Activity.lead_id, Activity.type, Activity.occurred_at)
        )
        inserted.extend(session.execute(stmt).all())
    _touch_leads(session, inserted)
    if rejected:
        session.execute(
            upsert_insert(session, Quarantine).values(
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
                ]
            )
        )
    if cursor is not None:
        save_cursor(session, source=source, stream=cursor[0], value=cursor[1])
    return BatchResult(
        inserted=len(inserted), duplicates=len(rows) - len(inserted), new_leads=created, quarantined=len(rejected)
    )


def _touch_leads(session: Session, inserted: Sequence[tuple[int, str, datetime]]) -> None:
    """Carry the newest activity time, unsubscribes and bounces onto the leads, never moving them back."""
    latest: dict[int, datetime] = {}
    unsubscribed: dict[int, datetime] = {}
    bounced: dict[int, datetime] = {}
    for lead_id, kind, at in inserted:
        latest[lead_id] = max(at, latest.get(lead_id, at))
        if kind == ActivityType.unsubscribe:
            unsubscribed[lead_id] = min(at, unsubscribed.get(lead_id, at))
        elif kind == ActivityType.email_bounce:
            bounced[lead_id] = min(at, bounced.get(lead_id, at))
    _set_where_later(session, Lead.last_activity_at, latest, keep="max")
    _set_where_later(session, Lead.unsubscribed_at, unsubscribed, keep="min")
    _set_where_later(session, Lead.bounced_at, bounced, keep="min")
    mark_due(session, list(latest))


def mark_due(session: Session, lead_ids: Sequence[int]) -> None:
    """Ask the next incremental requalify to look at these leads (new activity, new profile)."""
    if lead_ids:
        now = utcnow()
        session.connection().execute(
            update(Lead.__table__).where(Lead.__table__.c.id == bindparam("lid")).values(rescore_at=now),  # type: ignore[arg-type]
            [{"lid": lead_id} for lead_id in lead_ids],
        )


def _set_where_later(session: Session, column: Any, values: dict[int, datetime], *, keep: str) -> None:
    if not values:
        return
    better = column < bindparam("at") if keep == "max" else column > bindparam("at")
    stmt = (
        update(Lead.__table__)  # type: ignore[arg-type]
        .where(and_(Lead.__table__.c.id == bindparam("lid"), or_(column.is_(None), better)))
        .values({column.key: bindparam("at")})
    )
    session.connection().execute(stmt, [{"lid": k, "at": v} for k, v in values.items()])


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
