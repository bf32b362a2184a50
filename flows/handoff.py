"""Handoff flow: assign owners, queue every new SQL for each destination, settle SLAs, deliver, notify.

A destination that fails as a whole (refused credentials, a missing secret) stops alone: its rows
stay queued for the next run, the other destinations go on, and the report names the failure.
A destination that answered 410 Gone is switched off until `leadflow handoff enable NAME`.
CRM calls take a slot of the vendor's Prefect rate limit (`leadflow-<kind>`, shared with ingest).
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from leadflow.connectors.destinations import open_sink
from leadflow.connectors.notify import AppriseNotifier
from leadflow.flows.connect import vendor_rate_limit, workspace_secret
from leadflow.flows.events import emit_handoff_events
from leadflow.flows.logs import log_counts
from leadflow.flows.ops import (
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
    vendor_limit,
)
from leadflow.flows.params import HandoffParams
from leadflow.flows.problems import RunFailed, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import publish_handoff
from leadflow.flows.workspace import Workspace, run_clock, run_time, run_workspace
from leadflow.handoff.crm_ledger import DatabaseLedger
from leadflow.handoff.notify import NotifyReport, send_notifications
from leadflow.handoff.outbox import HandoffReport, deliver_pending
from leadflow.handoff.report import HandoffRunReport, handoff_report, settle_handoff_report
from leadflow.handoff.run import (
    Queued,
    assign_and_queue,
    destination_address,
    due_handoffs,
    settle_slas,
    switch_off,
    switched_off,
)
from leadflow.handoff.sla import SlaReport
from leadflow.leads.config.handoff import CrmDestination, HandoffDestination
from leadflow.leads.work.outbox import Clock


class HandoffFailed(RunFailed):
    """One or more destinations stopped; the message names them and why. Their rows stay queued."""


def destinations(ws: Workspace) -> list[HandoffDestination]:
    """LEADFLOW_HANDOFF_URL alone if set, else handoff.destinations, else handoff.destination."""
    return ws.config.handoff.resolved(ws.settings.handoff_url)


@task(task_run_name="assign owners and queue new SQLs", cache_policy=NONE)
def queue_handoffs(ws: Workspace, specs: list[HandoffDestination], now: datetime) -> Queued:
    queued = assign_and_queue(ws.engine, ws.config, [(spec.name, spec.since) for spec in specs], now)
    for message in queued.started.values():
        get_run_logger().info(message)
    return queued


@task(task_run_name="check SLAs", cache_policy=NONE)
def check_slas(ws: Workspace, now: datetime) -> SlaReport:
    return settle_slas(ws.engine, ws.config, now)


@task(task_run_name="deliver handoffs to {destination}", cache_policy=NONE)
def deliver_handoffs(
    ws: Workspace, destination: str, clock: Clock, limit: int | None, batch_size: int
) -> HandoffReport:
    """The destination's whole backlog, in batches (up to `limit` rows); rows are claimed by the wall clock."""
    spec = next(d for d in destinations(ws) if d.name == destination)
    if switched_off(ws.engine, spec):
        return HandoffReport()  # it answered 410 Gone before; the report says so
    secret = ws.settings.webhook_secret.get_secret_value() if ws.settings.webhook_secret else None
    sink = open_sink(
        spec,
        base_dir=ws.settings.workspace,
        secret=lambda env, block: workspace_secret(ws, env, block),
        ledger=DatabaseLedger(ws.engine),
        webhook_secret=secret,
        allow_private=ws.config.handoff.allow_private_addresses,
        acquire=vendor_rate_limit(spec) if isinstance(spec, CrmDestination) else None,
    )
    due = due_handoffs(ws.engine, destination, clock())
    if limit is not None:
        due = min(due, limit)  # the run stops at its limit: the bar ends there too
    with sink, step_progress(f"handoff to {destination}", unit="SQLs", total=due) as progress:
        report = deliver_pending(
            engine=ws.engine,
            sink=sink,
            destination=destination,
            clock=clock,
            limit=limit,
            batch_size=batch_size,
            dead_letter=ws.config.handoff.dead_letter_after,
            progress=progress,
        )
    if report.gone:
        switch_off(ws.engine, spec, report.gone, clock())
    return report


@task(task_run_name="notify owners", cache_policy=NONE)
def notify_owners(ws: Workspace, clock: Clock, limit: int | None, batch_size: int) -> NotifyReport:
    """Notification URLs may say ${NAME}: filled from the environment, else the workspace .env."""
    notifier = AppriseNotifier()
    return send_notifications(
        engine=ws.engine,
        config=ws.config,
        notifier=notifier,
        env=ws.secrets,
        clock=clock,
        limit=limit,
        batch_size=batch_size,
    )


@flow(name="handoff")
def handoff_flow(params: HandoffParams = HandoffParams()) -> HandoffRunReport:
    """Hand every new SQL to sales, exactly once per destination, with an owner, an SLA and a notification."""
    with run_workspace(params) as ws:
        return handoff(ws, params)


def handoff(ws: Workspace, params: HandoffParams) -> HandoffRunReport:
    """The handoff run's work, in the workspace its flow run was given."""
    now, clock = run_time(params.as_of), run_clock(params.as_of)
    specs = destinations(ws)
    with single_writer(ws.engine, "handoff:queue"):  # deliveries are shared through the outbox claim
        queued = queue_handoffs(ws, specs, now)
        sla = check_slas(ws, now)
    report = handoff_report([(spec.name, spec.kind) for spec in specs], queued, sla)
    for spec in specs:
        try:
            with slot(vendor_limit(spec.kind)):
                delivered = deliver_handoffs(ws, spec.name, clock, params.max_deliveries, params.batch_size)
        except Exception as exc:  # one destination's failure must not stop the others
            report.add_failure(spec.name, str(exc))
        else:
            report.add_delivery(spec.name, delivered)
    report.add_notifications(notify_owners(ws, clock, params.max_deliveries, params.batch_size))
    settle_handoff_report(ws.engine, report, {spec.name: destination_address(spec) for spec in specs})
    publish_handoff(report)
    log_counts(report)
    emit_handoff_events(ws.engine, report)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    if report.failed:
        raise HandoffFailed("; ".join(report.failed.values()), report=report)
    return finish(report)
