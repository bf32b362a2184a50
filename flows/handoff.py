"""Handoff flow: assign owners, queue every new SQL for each destination, settle SLAs, deliver, notify.

A destination that fails as a whole (refused credentials, a missing secret) stops alone: its rows
stay queued for the next run, the other destinations go on, and the report names the failure.
A destination that answered 410 Gone is switched off until `leadflow handoff enable NAME`.
CRM calls take a slot of the vendor's Prefect rate limit (`leadflow-<kind>`, shared with ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from connectors.destinations import open_sink
from connectors.notify import AppriseNotifier
from flows.events import emit_dead_letters
from flows.ingest import vendor_rate_limit, workspace_secret
from flows.logs import log_counts
from flows.ops import (
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
    vendor_limit,
)
from flows.params import HandoffParams
from flows.reports import DestinationCounts, HandoffRunReport, publish_handoff
from flows.workspace import Workspace, open_workspace, run_time
from handoff.assignment import AssignReport, assign_new_sqls
from handoff.crm_ledger import DatabaseLedger
from handoff.deadletters import dead_counts
from handoff.destinations import disable, disabled_reason
from handoff.notify import NotifyReport, environment, send_notifications
from handoff.outbox import HandoffReport, deliver_pending, queue_new_sqls_for
from handoff.sla import SlaReport, check_sla
from handoff.starts import destination_starts, left_out_message
from leads.db import session_scope
from leads.handoff_config import CRM_KINDS, HandoffDestination, legacy_name


class HandoffFailed(RuntimeError):
    """One or more destinations stopped; the message names them and why. Their rows stay queued."""


def destinations(ws: Workspace) -> list[HandoffDestination]:
    """LEADFLOW_HANDOFF_URL alone if set, else handoff.destinations, else handoff.destination."""
    return ws.config.handoff.resolved(ws.settings.handoff_url)


def destination_address(spec: HandoffDestination) -> str:
    """What identifies where a destination delivers; a change re-enables one switched off by a 410."""
    return str(getattr(spec, "url", None) or getattr(spec, "base_url", None) or getattr(spec, "path", spec.name))


@dataclass
class Queued:
    queued: dict[str, int]
    assigned: AssignReport
    started: dict[str, str]  # destinations that start this run without the SQLs handed off before them


@task(task_run_name="assign owners and queue new SQLs", cache_policy=NONE)
def queue_handoffs(ws: Workspace, specs: list[HandoffDestination], now: datetime) -> Queued:
    """Owners first, in the same transaction, so each destination's payload carries its owner."""
    with session_scope(ws.engine) as session:
        assigned = assign_new_sqls(session=session, config=ws.config.handoff, now=now)
        starts = destination_starts(session, [(spec.name, spec.since) for spec in specs], now)
        names = [spec.name for spec in specs]
        queued = queue_new_sqls_for(session=session, config=ws.config, destinations=names, now=now, starts=starts)
    started = {name: message for name, start in starts.items() if (message := left_out_message(name, start))}
    for message in started.values():
        get_run_logger().info(message)
    return Queued(queued=queued, assigned=assigned, started=started)


@task(task_run_name="check SLAs", cache_policy=NONE)
def check_slas(ws: Workspace, now: datetime) -> SlaReport:
    with session_scope(ws.engine) as session:
        return check_sla(session=session, config=ws.config.handoff, now=now)


@task(task_run_name="deliver handoffs to {destination}", cache_policy=NONE)
def deliver_handoffs(ws: Workspace, destination: str, now: datetime) -> HandoffReport:
    spec = next(d for d in destinations(ws) if d.name == destination)
    with session_scope(ws.engine) as session:
        if disabled_reason(session, destination, destination_address(spec)):
            return HandoffReport()  # it answered 410 Gone before; the report says so
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
        report = deliver_pending(
            engine=ws.engine,
            sink=sink,
            destination=destination,
            now=now,
            dead_letter=ws.config.handoff.dead_letter_after,
        )
    if report.gone:
        with session_scope(ws.engine) as session:
            disable(session, destination, destination_address(spec), report.gone, now)
    return report


@task(task_run_name="notify owners", cache_policy=NONE)
def notify_owners(ws: Workspace, now: datetime) -> NotifyReport:
    """Notification URLs may say ${NAME}: filled from the environment, else the workspace .env."""
    env = environment(ws.settings.workspace)
    return send_notifications(engine=ws.engine, config=ws.config, notifier=AppriseNotifier(), env=env, now=now)


@flow(name="handoff")
def handoff_flow(params: HandoffParams = HandoffParams()) -> HandoffRunReport:
    """Hand every new SQL to sales, exactly once per destination, with an owner, an SLA and a notification."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    specs = destinations(ws)
    with single_writer(ws.engine, "handoff:queue"):  # deliveries are shared through the outbox claim
        queued = queue_handoffs(ws, specs, now)
        sla = check_slas(ws, now)
    report = HandoffRunReport(
        destination=", ".join(spec.name for spec in specs),
        assigned=dict(queued.assigned.assigned),
        unassigned=queued.assigned.unassigned,
        waiting=queued.assigned.waiting,
        sla_met=sla.met,
        reassigned=dict(sla.reassigned),
        escalated=dict(sla.escalated),
        started=queued.started,
    )
    for spec in specs:
        counts = DestinationCounts(kind=spec.kind, queued=queued.queued[spec.name])
        try:
            with slot(vendor_limit(spec.kind)):
                delivered = deliver_handoffs(ws, spec.name, now)
        except Exception as exc:  # one destination's failure must not stop the others
            counts.error = str(exc)
        else:
            counts.delivered, counts.retried, counts.dead = delivered.delivered, delivered.retried, delivered.dead
            for owner, n in delivered.by_owner.items():
                report.delivered_by_owner[owner] = report.delivered_by_owner.get(owner, 0) + n
        report.destinations[spec.name] = counts
        report.queued += counts.queued
        report.delivered += counts.delivered
        report.retried += counts.retried
        report.dead += counts.dead
    notified = notify_owners(ws, now)
    report.notified = dict(notified.sent)
    report.notify_retried, report.notify_dead, report.notify_skipped = notified.retried, notified.dead, notified.skipped
    with session_scope(ws.engine) as session:
        report.dead_letters = dead_counts(session)
        for spec in specs:
            reason = disabled_reason(session, spec.name, destination_address(spec))
            if reason:
                report.disabled[spec.name] = reason
    publish_handoff(report)
    log_counts(report)
    for spec in specs:
        emit_dead_letters(ws.engine, kind="handoff", destination=spec.name, dead=report.destinations[spec.name].dead)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    failed = {name: c.error for name, c in report.destinations.items() if c.error}
    if failed:
        raise HandoffFailed("; ".join(str(error) for error in failed.values()))
    return report


def sink_name(url: str) -> str:
    """A stable short name for a single-URL destination; part of every handoff's idempotency key."""
    return legacy_name(url)
