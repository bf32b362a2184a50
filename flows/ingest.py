"""Ingest flow: read every configured source from its cursor and store the new activity."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.files import FileActivitySource
from connectors.sync import SyncTotals, sync_source
from flows.params import IngestParams
from flows.reports import IngestReport, SourceCounts, publish_ingest
from flows.workspace import Workspace, open_workspace, run_time


@task(task_run_name="ingest {source_name}", cache_policy=NONE)
def ingest_source(ws: Workspace, source_name: str, now: datetime, batch_size: int) -> SyncTotals:
    spec = next(s for s in ws.config.sources if s.name == source_name)
    source = FileActivitySource(spec.name, ws.path(spec.path), batch_size=batch_size)
    return sync_source(engine=ws.engine, source=source, now=now)


@flow(name="ingest", log_prints=False)
def ingest_flow(params: IngestParams = IngestParams()) -> IngestReport:
    """Pull new lead activity from every source in leadflow.yaml."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    report = IngestReport()
    reasons: Counter[str] = Counter()
    for spec in ws.config.sources:
        totals = ingest_source(ws, spec.name, now, params.batch_size)
        report.sources[spec.name] = SourceCounts(
            files=totals.files,
            inserted=totals.inserted,
            duplicates=totals.duplicates,
            new_leads=totals.new_leads,
            quarantined=totals.quarantined,
        )
        reasons.update(totals.reasons)
    report.quarantine_by_reason = dict(reasons)
    publish_ingest(report)
    return report
