"""Ingest flow: read every configured source from its cursor and store the new activity."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.files import FileActivitySource
from flows.params import IngestParams
from flows.reports import IngestReport, SourceCounts, publish_ingest
from flows.workspace import Workspace, open_workspace, run_time
from leads.db import session_scope
from leads.ingest import load_cursor, store_batch


@task(task_run_name="ingest {source_name}", cache_policy=NONE)
def ingest_source(ws: Workspace, source_name: str, now: datetime, batch_size: int) -> tuple[SourceCounts, Counter[str]]:
    """Every file of one source, page by page; each page commits with its cursor."""
    spec = next(s for s in ws.config.sources if s.name == source_name)
    source = FileActivitySource(spec.name, ws.path(spec.path), batch_size=batch_size)
    counts, reasons = SourceCounts(), Counter[str]()
    for file in source.files():
        counts.files += 1
        with session_scope(ws.engine) as session:
            cursor = load_cursor(session, source=spec.name, stream=file.name)
        for page in source.pages(file, cursor, now=now):
            with session_scope(ws.engine) as session:
                result = store_batch(
                    session=session,
                    source=spec.name,
                    records=page.records,
                    rejected=page.rejected,
                    cursor=(page.stream, page.cursor),
                )
            counts.inserted += result.inserted
            counts.duplicates += result.duplicates
            counts.new_leads += result.new_leads
            counts.quarantined += result.quarantined
            reasons.update(r.reason for r in page.rejected)
    return counts, reasons


@flow(name="ingest", log_prints=False)
def ingest_flow(params: IngestParams = IngestParams()) -> IngestReport:
    """Pull new lead activity from every source in leadflow.yaml."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    report = IngestReport()
    reasons: Counter[str] = Counter()
    for spec in ws.config.sources:
        counts, source_reasons = ingest_source(ws, spec.name, now, params.batch_size)
        report.sources[spec.name] = counts
        reasons.update(source_reasons)
    report.quarantine_by_reason = dict(reasons)
    publish_ingest(report)
    return report
