"""Storing a page of activity: upsert leads, insert events once, quarantine the rest, move the cursor.

All of it happens in the caller's transaction, so a page and its cursor commit together: a run
that dies midway resumes at the last committed page, and re-ingesting a page is a no-op because
(source, source_id) is unique.

Ingest is the hot path (hundreds of thousands of events a second from a file): the leads go through
`lead_upsert`, the activity rows through `activity_insert` (one prepared `executemany`, set-based
updates of their leads), the cursor through `cursors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import Quarantine, utcnow
from leadflow.leads.ingest.activity_insert import insert_activity
from leadflow.leads.ingest.cursors import save_cursor
from leadflow.leads.ingest.lead_upsert import LeadCache, upsert_leads
from leadflow.leads.ingest.records import ActivityRecord, ProfileRecord, Rejected
from leadflow.leads.ingest.rows import as_columns


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    duplicates: int
    new_leads: int
    quarantined: int
    profiles: int = 0


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
    ids, created, updated = upsert_leads(session, source, columns, emails, profiles, cache)
    inserted = insert_activity(session, source, columns, ids, defer_latest=defer_latest) if emails else 0
    if defer_latest and inserted:
        cache.touched |= emails
    if rejected:
        session.connection().execute(
            insert(table_of(Quarantine)),
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
