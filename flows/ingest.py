"""Ingest flow: read every configured source from its cursors and store the new activity.

One task per source. A source that fails (an expired token, a refused permission) stops alone:
what it stored before stays stored and its cursor says where to resume; the other sources go on,
the report names the failure, and the run ends failed so it is noticed. Only retriable failures
(rate limits, timeouts, 5xx that outlasted the connector's own retries) are retried by Prefect.
CRM calls take a slot of a Prefect global concurrency limit first (`leadflow-<kind>` unless the
source names one), so a vendor's rate limit holds across tasks, flow runs and workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from leadflow.connectors.errors import Retriable
from leadflow.connectors.sources import open_source
from leadflow.connectors.sync import SyncTotals, sync_source
from leadflow.flows.logs import log_counts
from leadflow.flows.ops import publish_attention, publish_run_steps, single_writer, top_level
from leadflow.flows.params import IngestParams
from leadflow.flows.problems import Problem, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import IngestReport, SourceCounts, publish_ingest
from leadflow.flows.workspace import Workspace, run_time, run_workspace
from leadflow.leads.config.workspace import FileSource, SourceConfig


class IngestFailed(RuntimeError):
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
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retriable,
)
def ingest_source(ws: Workspace, source_name: str, now: datetime, batch_size: int) -> SyncTotals:
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
            return sync_source(engine=ws.engine, source=source, now=now, progress=progress)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def workspace_secret(ws: Workspace, env_name: str | None, block_name: str | None) -> str | None:
    """A credential from a Prefect Secret block, the environment, or the workspace's .env file (in that order)."""
    if block_name:
        from prefect.blocks.system import Secret

        return str(Secret.load(block_name).get())
    return ws.secrets.get(env_name) if env_name else None


def vendor_rate_limit(spec: SourceConfig) -> Callable[[], None] | None:
    """A callable that takes one slot of the source's Prefect rate limit; None for files or a missing limit.

    Like Prefect's own `strict=False`, a limit that was never created is not an error: the run
    goes unthrottled, with one warning that says how to create it.
    """
    if isinstance(spec, FileSource):
        return None
    name = spec.rate_limit or f"leadflow-{spec.kind}"
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        get_run_logger().warning(
            "No Prefect concurrency limit %r: %s calls are not rate limited across workers "
            "(create one: prefect gcl create %s --limit 10 --slot-decay-per-second 10)",
            name,
            spec.kind,
            name,
        )
        return None

    def acquire() -> None:
        rate_limit(name, occupy=1, strict=False)

    return acquire


@flow(name="ingest", log_prints=False)
def ingest_flow(params: IngestParams = IngestParams()) -> IngestReport:
    """Pull new lead activity from every source in leadflow.yaml."""
    with run_workspace(params) as ws:
        return ingest(ws, params)


def ingest(ws: Workspace, params: IngestParams) -> IngestReport:
    """The ingest run's work, in the workspace its flow run was given."""
    now = run_time(params.as_of)
    report = IngestReport()
    reasons: Counter[str] = Counter()
    for spec in ws.config.sources:
        error: str | None = None
        try:
            with single_writer(ws.engine, f"ingest:{spec.name}"):  # one reader per source across runs
                totals = ingest_source(ws, spec.name, now, params.batch_size)
        except Exception as exc:
            totals, error = getattr(exc, "totals", None) or SyncTotals(), str(exc)
        report.sources[spec.name] = SourceCounts(
            kind=spec.kind,
            error=error,
            streams=totals.streams,
            pages=totals.pages,
            inserted=totals.inserted,
            duplicates=totals.duplicates,
            new_leads=totals.new_leads,
            profiles=totals.profiles,
            skipped=totals.skipped,
            quarantined=totals.quarantined,
            quarantine_by_reason=dict(totals.reasons),
        )
        reasons.update(totals.reasons)
    report.quarantine_by_reason = dict(reasons)
    report.problems = [
        Problem(step="ingest", what=f"source {name} stopped: {why}") for name, why in report.failed.items()
    ]
    publish_ingest(report)
    log_counts(report)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    if report.failed and params.fail_on_source_error:
        raise IngestFailed("; ".join(f"{error}" for error in report.failed.values()))
    return finish(report)  # a failed source that did not fail the run (the pipeline goes on) still shows
