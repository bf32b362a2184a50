"""Handoff flow: queue every new SQL for each destination and deliver each destination's outbox.

A destination that fails as a whole (refused credentials, a missing secret) stops alone: its rows
stay queued for the next run, the other destinations go on, and the report names the failure.
CRM calls take a slot of the vendor's Prefect rate limit (`leadflow-<kind>`, shared with ingest).
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.destinations import open_sink
from flows.ingest import vendor_rate_limit, workspace_secret
from flows.params import HandoffParams
from flows.reports import DestinationCounts, HandoffRunReport, publish_handoff
from flows.workspace import Workspace, open_workspace, run_time
from handoff.crm_ledger import DatabaseLedger
from handoff.outbox import HandoffReport, deliver_pending, queue_new_sqls
from leads.db import session_scope
from leads.handoff_config import CRM_KINDS, HandoffDestination, legacy_name


class HandoffFailed(RuntimeError):
    """One or more destinations stopped; the message names them and why. Their rows stay queued."""


def destinations(ws: Workspace) -> list[HandoffDestination]:
    """LEADFLOW_HANDOFF_URL alone if set, else handoff.destinations, else handoff.destination."""
    return ws.config.handoff.resolved(ws.settings.handoff_url)


@task(task_run_name="queue new SQLs for {destination}", cache_policy=NONE)
def queue_handoffs(ws: Workspace, destination: str, now: datetime) -> int:
    with session_scope(ws.engine) as session:
        return queue_new_sqls(session=session, config=ws.config, destination=destination, now=now)


@task(task_run_name="deliver handoffs to {destination}", cache_policy=NONE)
def deliver_handoffs(ws: Workspace, destination: str, now: datetime) -> HandoffReport:
    spec = next(d for d in destinations(ws) if d.name == destination)
    secret = ws.settings.webhook_secret.get_secret_value() if ws.settings.webhook_secret else None
    sink = open_sink(
        spec,
        base_dir=ws.settings.workspace,
        secret=lambda env, block: workspace_secret(ws, env, block),
        ledger=DatabaseLedger(ws.engine),
        webhook_secret=secret,
        allow_private=ws.config.handoff.allow_private_addresses,
        acquire=vendor_rate_limit(spec) if spec.kind in CRM_KINDS else None,  # type: ignore[arg-type]
    )
    with sink:
        return deliver_pending(engine=ws.engine, sink=sink, destination=destination, now=now)


@flow(name="handoff")
def handoff_flow(params: HandoffParams = HandoffParams()) -> HandoffRunReport:
    """Hand every new SQL to sales, exactly once per destination."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    report = HandoffRunReport(destination=", ".join(d.name for d in destinations(ws)))
    for spec in destinations(ws):
        counts = DestinationCounts(kind=spec.kind)
        counts.queued = queue_handoffs(ws, spec.name, now)
        try:
            delivered = deliver_handoffs(ws, spec.name, now)
        except Exception as exc:  # one destination's failure must not stop the others
            counts.error = str(exc)
        else:
            counts.delivered, counts.retried, counts.dead = delivered.delivered, delivered.retried, delivered.dead
        report.destinations[spec.name] = counts
        report.queued += counts.queued
        report.delivered += counts.delivered
        report.retried += counts.retried
        report.dead += counts.dead
    publish_handoff(report)
    failed = {name: c.error for name, c in report.destinations.items() if c.error}
    if failed:
        raise HandoffFailed("; ".join(str(error) for error in failed.values()))
    return report


def sink_name(url: str) -> str:
    """A stable short name for a single-URL destination; part of every handoff's idempotency key."""
    return legacy_name(url)
