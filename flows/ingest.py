"""Ingest flow: read every configured source from its cursors and store the new activity.

One task per source. A source that fails (an expired token, a refused permission) stops alone:
what it stored before stays stored and its cursor says where to resume; the other sources go on,
the report names the failure, and the run ends failed so it is noticed. Only retriable failures
(rate limits, timeouts, 5xx that outlasted the connector's own retries) are retried by Prefect.
CRM calls take a slot of a Prefect global concurrency limit first (`leadflow-<kind>` unless the
source names one), so a vendor's rate limit holds across tasks, flow runs and workers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime.task_run import get_run_count
from prefect.tasks import exponential_backoff

from leadflow.connectors.errors import Retriable
from leadflow.connectors.sources import open_source
from leadflow.connectors.sync import sync_until_stopped
from leadflow.flows.connect import vendor_rate_limit, workspace_secret
from leadflow.flows.logs import log_counts
from leadflow.flows.ops import publish_attention, publish_run_steps, single_writer, top_level
from leadflow.flows.params import IngestParams
from leadflow.flows.problems import RunFailed, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import publish_ingest
from leadflow.flows.workspace import Workspace, run_time, run_workspace
from leadflow.leads.ingest.report import IngestReport, SourceCounts, ingest_report

RETRIES = 2  # Prefect runs a source up to three times for retriable failures


class IngestFailed(RunFailed):
    """One or more sources stopped; the message names them and why."""


def _retriable(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Retriable:
        return True
    except Exception:
        return False
    return False


@task(
    task_run_name="ingest {source_name}",
    cache_policy=NONE,
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retriable,
)
def ingest_source(ws: Workspace, source_name: str, now: datetime, batch_size: int) -> SourceCounts:
    """What the source stored, and why it stopped if it did; a retriable stop is raised while retries are left."""
    spec = next(s for s in ws.config.sources if s.name == source_name)
    source = open_source(
        spec,
        base_dir=ws.settings.config_file.parent,
        secret=lambda env, block: workspace_secret(ws, env, block),
        acquire=vendor_rate_limit(spec),
        batch_size=batch_size,
        plus_addressing=ws.config.plus_addressing,
    )
    try:
        with step_progress(f"ingest {source_name}") as progress:
            result = sync_until_stopped(engine=ws.engine, source=source, now=now, progress=progress)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if isinstance(result.error, Retriable) and get_run_count() <= RETRIES:
        raise result.error  # Prefect runs the source again from its cursor
    return result.counts(spec.kind)


@flow(name="ingest", log_prints=False)
def ingest_flow(params: IngestParams = IngestParams()) -> IngestReport:
    """Pull new lead activity from every source in leadflow.yaml."""
    with run_workspace(params) as ws:
        return ingest(ws, params)


def ingest(ws: Workspace, params: IngestParams) -> IngestReport:
    """The ingest run's work, in the workspace its flow run was given."""
    now = run_time(params.as_of)
    sources: dict[str, SourceCounts] = {}
    for spec in ws.config.sources:
        try:
            with single_writer(ws.engine, f"ingest:{spec.name}"):  # one reader per source across runs
                sources[spec.name] = ingest_source(ws, spec.name, now, params.batch_size)
        except Exception as exc:  # it could not start: a missing secret, its streams not listed
            sources[spec.name] = SourceCounts(kind=spec.kind, error=str(exc))
    report = ingest_report(sources)
    publish_ingest(report)
    log_counts(report)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    if report.failed and params.fail_on_source_error:
        raise IngestFailed("; ".join(f"{error}" for error in report.failed.values()), report=report)
    return finish(report)  # a failed source that did not fail the run (the pipeline goes on) still shows
