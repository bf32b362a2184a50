"""Handoff flow: assign owners, queue every new SQL for the destination, settle SLAs, deliver, notify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.handoff import sink_from_url
from connectors.notify import AppriseNotifier
from flows.params import HandoffParams
from flows.reports import HandoffRunReport, publish_handoff
from flows.workspace import Workspace, open_workspace, run_time
from handoff.assignment import AssignReport, assign_new_sqls
from handoff.deadletters import dead_counts
from handoff.destinations import all_disabled, disable, disabled_reason
from handoff.notify import NotifyReport, environment, send_notifications
from handoff.outbox import HandoffReport, deliver_pending, queue_new_sqls
from handoff.sla import SlaReport, check_sla
from leads.db import session_scope


def destination_url(ws: Workspace) -> str:
    return ws.settings.handoff_url or ws.config.handoff.destination


@dataclass
class Queued:
    queued: int
    assigned: AssignReport


@task(task_run_name="assign owners and queue new SQLs", cache_policy=NONE)
def queue_handoffs(ws: Workspace, destination: str, now: datetime) -> Queued:
    """Owners first, in the same transaction, so each payload carries its owner."""
    with session_scope(ws.engine) as session:
        assigned = assign_new_sqls(session=session, config=ws.config.handoff, now=now)
        queued = queue_new_sqls(session=session, config=ws.config, destination=destination, now=now)
    return Queued(queued=queued, assigned=assigned)


@task(task_run_name="check SLAs", cache_policy=NONE)
def check_slas(ws: Workspace, now: datetime) -> SlaReport:
    with session_scope(ws.engine) as session:
        return check_sla(session=session, config=ws.config.handoff, now=now)


@task(task_run_name="deliver handoffs", cache_policy=NONE)
def deliver_handoffs(ws: Workspace, destination: str, now: datetime) -> HandoffReport:
    url = destination_url(ws)
    with session_scope(ws.engine) as session:
        if disabled_reason(session, destination, url):
            return HandoffReport()  # it answered 410 Gone before; the report says so
    secret = ws.settings.webhook_secret.get_secret_value() if ws.settings.webhook_secret else None
    sink = sink_from_url(
        url,
        base_dir=ws.settings.workspace,
        secret=secret,
        allow_private=ws.config.handoff.allow_private_addresses,
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
            disable(session, destination, url, report.gone, now)
    return report


@task(task_run_name="notify owners", cache_policy=NONE)
def notify_owners(ws: Workspace, now: datetime) -> NotifyReport:
    """Notification URLs may say ${NAME}: filled from the environment, else the workspace .env."""
    env = environment(ws.settings.workspace)
    return send_notifications(engine=ws.engine, config=ws.config, notifier=AppriseNotifier(), env=env, now=now)


@flow(name="handoff")
def handoff_flow(params: HandoffParams = HandoffParams()) -> HandoffRunReport:
    """Hand every new SQL to sales, exactly once per destination."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    destination = sink_name(destination_url(ws))
    queued = queue_handoffs(ws, destination, now)
    sla = check_slas(ws, now)
    delivered = deliver_handoffs(ws, destination, now)
    notified = notify_owners(ws, now)
    with session_scope(ws.engine) as session:
        disabled = {d.name: disabled_reason(session, d.name, destination_url(ws)) or "" for d in all_disabled(session)}
        dead_now = dead_counts(session)
    report = HandoffRunReport(
        destination=destination,
        queued=queued.queued,
        delivered=delivered.delivered,
        retried=delivered.retried,
        dead=delivered.dead,
        delivered_by_destination={destination: delivered.delivered} if delivered.delivered else {},
        delivered_by_owner=dict(delivered.by_owner),
        assigned=dict(queued.assigned.assigned),
        unassigned=queued.assigned.unassigned,
        waiting=queued.assigned.waiting,
        sla_met=sla.met,
        reassigned=dict(sla.reassigned),
        escalated=dict(sla.escalated),
        notified=dict(notified.sent),
        notify_retried=notified.retried,
        notify_dead=notified.dead,
        notify_skipped=notified.skipped,
        dead_letters=dead_now,
        disabled={name: reason for name, reason in disabled.items() if reason},
    )
    publish_handoff(report)
    return report


def sink_name(url: str) -> str:
    """A stable short name for a destination; part of every handoff's idempotency key."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1] if scheme.startswith("http") else ""
    return f"webhook:{host}" if host else "file"
