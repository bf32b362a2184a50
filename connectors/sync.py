"""Moving a source's new records into the database, page by page, each page with its cursor.

A page and its cursor commit in one transaction, so a run that dies midway resumes at the
last committed page without skipping or repeating anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from connectors.files import FileActivitySource
from leads.db import session_scope
from leads.ingest import load_cursor, store_batch


@dataclass
class SyncTotals:
    files: int = 0
    pages: int = 0
    inserted: int = 0
    duplicates: int = 0
    new_leads: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def sync_source(*, engine: Engine, source: FileActivitySource, now: datetime) -> SyncTotals:
    """Every file of `source` from its saved cursor on."""
    totals = SyncTotals()
    for file in source.files():
        totals.files += 1
        with session_scope(engine) as session:
            cursor = load_cursor(session, source=source.name, stream=file.name)
        for page in source.pages(file, cursor, now=now):
            with session_scope(engine) as session:
                result = store_batch(
                    session=session,
                    source=source.name,
                    records=page.records,
                    rejected=page.rejected,
                    cursor=(page.stream, page.cursor),
                )
            totals.pages += 1
            totals.inserted += result.inserted
            totals.duplicates += result.duplicates
            totals.new_leads += result.new_leads
            totals.quarantined += result.quarantined
            totals.reasons.update(r.reason for r in page.rejected)
    return totals
