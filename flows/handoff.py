"""Handoff flow: queue every new SQL for the destination and deliver the outbox."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.handoff import sink_from_url
from flows.events import emit_dead_letters
from flows.ops import (
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
    vendor_limit,
)
from flows.params import HandoffParams
from flows.reports import HandoffRunReport, publish_handoff
from flows.workspace import Workspace, open_workspace, run_time
from handoff.outbox import HandoffReport, deliver_pending, queue_new_sqls
from leads.db import session_scope


def destination_url(ws: Workspace) -> str:
    return ws.settings.handoff_url or ws.config.handoff.destination


@task(task_run_name="queue new SQLs", cache_policy=NONE)
def queue_handoffs(ws: Workspace, destination: str, now: datetime) -> int:
    with session_scope(ws.engine) as session:
        return queue_new_sqls(session=session, config=ws.config, destination=destination, now=now)


@task(task_run_name="deliver handoffs", cache_policy=NONE)
def deliver_handoffs(ws: Workspace, destination: str, now: datetime) -> HandoffReport:
    secret = ws.settings.webhook_secret.get_secret_value() if ws.settings.webhook_secret else None
    sink = sink_from_url(
        destination_url(ws),
        base_dir=ws.settings.workspace,
        secret=secret,
        allow_private=ws.config.handoff.allow_private_addresses,
    )
    with sink:
        return deliver_pending(engine=ws.engine, sink=sink, destination=destination, now=now)


@flow(name="handoff")
def handoff_flow(params: HandoffParams = HandoffParams()) -> HandoffRunReport:
    """Hand every new SQL to sales, exactly once per destination."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    destination = sink_name(destination_url(ws))
    with single_writer(ws.engine, f"handoff:queue:{destination}"):  # deliveries are shared through the outbox claim
        queued = queue_handoffs(ws, destination, now)
    with slot(vendor_limit(destination)):
        delivered = deliver_handoffs(ws, destination, now)
    report = HandoffRunReport(
        destination=destination,
        queued=queued,
        delivered=delivered.delivered,
        retried=delivered.retried,
        dead=delivered.dead,
    )
    publish_handoff(report)
    emit_dead_letters(ws.engine, kind="handoff", destination=destination, dead=delivered.dead)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    return report


def sink_name(url: str) -> str:
    """A stable short name for a destination; part of every handoff's idempotency key."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1] if scheme.startswith("http") else ""
    return f"webhook:{host}" if host else "file"
