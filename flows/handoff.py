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

from leadflow.connectors.destinations import open_sink
from leadflow.connectors.notify import AppriseNotifier
from leadflow.flows.events import emit_backlog, emit_dead_letters
from leadflow.flows.ingest import vendor_rate_limit, workspace_secret
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
from leadflow.flows.problems import Problem, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import DestinationCounts, HandoffRunReport, publish_handoff
from leadflow.flows.workspace import Workspace, run_clock, run_time, run_workspace
from leadflow.handoff.assignment import AssignReport, assign_new_sqls
from leadflow.handoff.crm_ledger import DatabaseLedger
from leadflow.handoff.deadletters import dead_counts
from leadflow.handoff.destinations import disable, disabled_reason
from leadflow.handoff.notify import NotifyReport, send_notifications, unsent_notifications
from leadflow.handoff.outbox import HandoffReport, deliver_pending, queue_new_sqls_for, undelivered
from leadflow.handoff.sla import SlaReport, check_sla
from leadflow.handoff.starts import destination_starts, left_out_message
from leadflow.leads.config.handoff import CRM_KINDS, HandoffDestination, legacy_name
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import HandoffOutbox
from leadflow.leads.work.outbox import Clock, count_due


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
def deliver_handoffs(
    ws: Workspace, destination: str, clock: Clock, limit: int | None, batch_size: int
) -> HandoffReport:
    """The destination's whole backlog, in batches (up to `limit` rows); rows are claimed by the wall clock."""
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
    with session_scope(ws.engine) as session:
        mine = [HandoffOutbox.destination == destination]
        due = count_due(session=session, table=HandoffOutbox, now=clock(), where=mine)
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
        with session_scope(ws.engine) as session:
            disable(session, destination, destination_address(spec), report.gone, clock())
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
                delivered = deliver_handoffs(ws, spec.name, clock, params.max_deliveries, params.batch_size)
        except Exception as exc:  # one destination's failure must not stop the others
            counts.error = str(exc)
        else:
            counts.delivered, counts.retried, counts.dead = delivered.delivered, delivered.retried, delivered.dead
            counts.stopped = delivered.stopped
            for owner, n in delivered.by_owner.items():
                report.delivered_by_owner[owner] = report.delivered_by_owner.get(owner, 0) + n
        report.destinations[spec.name] = counts
        report.queued += counts.queued
        report.delivered += counts.delivered
        report.retried += counts.retried
        report.dead += counts.dead
    notified = notify_owners(ws, clock, params.max_deliveries, params.batch_size)
    report.notified = dict(notified.sent)
    report.notify_retried, report.notify_dead, report.notify_skipped = notified.retried, notified.dead, notified.skipped
    report.notify_stopped = notified.stopped
    with session_scope(ws.engine) as session:
        report.dead_letters = dead_counts(session)
        for spec in specs:
            report.destinations[spec.name].backlog = undelivered(session, spec.name)
            reason = disabled_reason(session, spec.name, destination_address(spec))
            if reason:
                report.disabled[spec.name] = reason
        report.notify_backlog = unsent_notifications(session)
    report.problems = handoff_problems(report)
    publish_handoff(report)
    log_counts(report)
    for name, counts in report.destinations.items():
        emit_dead_letters(ws.engine, kind="handoff", destination=name, dead=counts.dead)
        why = counts.error or report.disabled.get(name) or counts.stopped
        emit_backlog(kind="handoff", name=name, backlog=counts.backlog, reason=why)
    emit_backlog(kind="notify", name="notifications", backlog=report.notify_backlog, reason=report.notify_stopped)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    failed = {name: c.error for name, c in report.destinations.items() if c.error}
    if failed:
        error = HandoffFailed("; ".join(str(error) for error in failed.values()))
        error.report = report  # type: ignore[attr-defined]  # what the run did, for the caller
        raise error
    return finish(report)


def handoff_problems(report: HandoffRunReport) -> list[Problem]:
    """What an admin must look at after this run: stopped or switched-off destinations, dead letters,
    and a backlog the run left behind on purpose (its limit, a peer failing a whole batch)."""
    problems = []
    for name, c in report.destinations.items():
        left = f"; {c.backlog} not delivered yet" if c.backlog else ""
        if c.error:
            problems.append(Problem(step="handoff", what=f"{name} stopped: {c.error}{left}"))
        elif name in report.disabled:
            problems.append(Problem(step="handoff", what=f"{name} is switched off ({report.disabled[name]}){left}"))
        elif c.stopped and c.backlog:
            problems.append(Problem(step="handoff", what=f"{name}: {c.backlog} not delivered yet: {c.stopped}"))
        if c.dead:
            problems.append(Problem(step="handoff", what=f"{name}: {c.dead} dead-lettered this run"))
    if report.notify_dead:
        problems.append(Problem(step="notifications", what=f"{report.notify_dead} dead-lettered this run"))
    if report.notify_stopped and report.notify_backlog:
        what = f"{report.notify_backlog} not sent yet: {report.notify_stopped}"
        problems.append(Problem(step="notifications", what=what))
    return problems


def sink_name(url: str) -> str:
    """A stable short name for a single-URL destination; part of every handoff's idempotency key."""
    return legacy_name(url)
