"""Moving a source's new records into the database, page by page, each page with its cursor.

A page and its cursor commit in one transaction, so a run that dies midway resumes at the
last committed page without skipping or repeating anything. Every kind of source (files,
CRMs) goes through here: a source lists its streams and yields pages of a stream from a cursor.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from leadflow.connectors.pages import Page
from leadflow.leads.db.bulkload import lead_index_set_aside, page_connection
from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.activity_insert import DEFERRED_STREAM, apply_lead_activity, defer_lead_activity
from leadflow.leads.ingest.cursors import load_cursor
from leadflow.leads.ingest.lead_upsert import LeadCache
from leadflow.leads.ingest.report import SourceCounts
from leadflow.leads.ingest.store import store_batch
from leadflow.leads.work.gc_pause import cycle_collector_paused
from leadflow.leads.work.progress import Progress, advance


class ActivitySource(Protocol):
    """A file source, a CRM source: named streams, each read from its cursor in pages."""

    name: str

    def streams(self) -> Sequence[Any]: ...

    def pages(self, stream: Any, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]: ...


@dataclass
class SyncTotals:
    streams: int = 0
    pages: int = 0
    inserted: int = 0
    duplicates: int = 0
    new_leads: int = 0
    profiles: int = 0
    skipped: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def files(self) -> int:
        """File sources have one stream per file."""
        return self.streams


@dataclass
class SyncResult:
    """What a sync stored, and the error that stopped it if one did (the pages before it stay stored)."""

    totals: SyncTotals
    error: Exception | None = None

    def counts(self, kind: str) -> SourceCounts:
        """The source's line in the ingest report."""
        t = self.totals
        return SourceCounts(
            kind=kind,
            error=str(self.error) if self.error is not None else None,
            streams=t.streams,
            pages=t.pages,
            inserted=t.inserted,
            duplicates=t.duplicates,
            new_leads=t.new_leads,
            profiles=t.profiles,
            skipped=t.skipped,
            quarantined=t.quarantined,
            quarantine_by_reason=dict(t.reasons),
        )


def sync_source(
    *, engine: Engine, source: ActivitySource, now: datetime, progress: Progress | None = None
) -> SyncTotals:
    """Every stream of `source` from its saved cursor on; the error that stops it is raised."""
    result = sync_until_stopped(engine=engine, source=source, now=now, progress=progress)
    if result.error is not None:
        raise result.error
    return result.totals


def sync_until_stopped(
    *, engine: Engine, source: ActivitySource, now: datetime, progress: Progress | None = None
) -> SyncResult:
    """Every stream of `source` from its saved cursor on, until done or an error stops it.

    What was stored comes back either way, with the error (one raised before the first page, while
    listing the streams, is raised: nothing was stored). The leads' last activity times are
    caught up once at the end (also when a stream fails), not once per page; see
    `leadflow.leads.ingest.activity_insert.defer_lead_activity`. A source that can tell how
    many rows it is about to add (`estimated_rows(stream, cursor)`, files do) may get SQLite's
    bulk-load mode for the run (`leadflow.leads.db.bulkload`); with `progress`, that estimate is its total (else
    none), and each stored page advances it by its lines.
    """
    totals = SyncTotals()
    cache = LeadCache()
    with session_scope(engine) as session:
        # A deferral left by a run that died: its leads are not known here, the catch-up groups its rows.
        inherited = load_cursor(session, source=source.name, stream=DEFERRED_STREAM) is not None
        after_id = defer_lead_activity(session, source=source.name)
        streams = [
            (stream, load_cursor(session, source=source.name, stream=stream.name)) for stream in source.streams()
        ]
    estimate = getattr(source, "estimated_rows", None)
    new_rows = sum(estimate(stream, cursor) for stream, cursor in streams) if estimate is not None else 0
    if progress is not None:
        progress.expect(new_rows if estimate is not None else None)
    with lead_index_set_aside(engine, new_rows=new_rows) as set_aside, ExitStack() as held:
        # A bulk run also stores its pages without SQLite's per-row foreign-key check (see page_connection).
        bind = held.enter_context(page_connection(engine)) if set_aside else engine
        try:
            for stream, cursor in streams:
                totals.streams += 1
                pages = source.pages(stream, cursor, now=now)
                while True:
                    # A page makes hundreds of thousands of small objects and no cycles: the collector
                    # would walk them (and all the run's caches) again and again; it runs between pages.
                    with cycle_collector_paused():
                        page = next(pages, None)
                        if page is None:
                            break
                        with session_scope(bind) as session:
                            result = store_batch(
                                session=session,
                                source=source.name,
                                records=page.records,
                                rejected=page.rejected,
                                cursor=(page.stream, page.cursor),
                                profiles=page.profiles,
                                cache=cache,
                                defer_latest=True,
                            )
                    totals.pages += 1
                    totals.inserted += result.inserted
                    totals.duplicates += result.duplicates
                    totals.new_leads += result.new_leads
                    totals.profiles += result.profiles
                    totals.skipped += page.skipped
                    totals.quarantined += result.quarantined
                    totals.reasons.update(r.reason for r in page.rejected)
                    advance(progress, len(page.records) + len(page.rejected) + len(page.profiles) + page.skipped)
        except BaseException as exc:
            with contextlib.suppress(Exception), session_scope(engine) as session:  # the next run catches up otherwise
                apply_lead_activity(session, source=source.name, after_id=after_id)
            if isinstance(exc, Exception):
                return SyncResult(totals, error=exc)
            raise  # an interrupt stops the run, not just this source
        held.close()
        if set_aside:  # the catch-up reads through the lead index: build it first
            set_aside.restore()
        with session_scope(engine) as session:
            leads = None if inherited else cache.touched_leads()
            apply_lead_activity(session, source=source.name, after_id=after_id, leads=leads)
    return SyncResult(totals)
