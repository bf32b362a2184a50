"""Nurture flow: exit, enroll, queue due steps, then send the outbox through the mail transport.

With `dry_run`, the same decisions are made in one transaction that is rolled back, and every due
email is judged and rendered but not sent: the report says per lead what would go, and why not.

The templates of every due step are checked before anything is queued or sent; a step whose
template fails is held (nurture/held.py), the rest goes out, and the run then fails naming file and line.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from leadflow.connectors.mail import public_mail_url, transport_from_url
from leadflow.flows.events import emit_finished_sequences
from leadflow.flows.logs import log_counts
from leadflow.flows.ops import (
    mail_limit,
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
)
from leadflow.flows.params import NurtureParams
from leadflow.flows.problems import Problem, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import NurtureReport, PreviewEmail, publish_nurture
from leadflow.flows.workspace import Workspace, run_clock, run_time, run_workspace
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox
from leadflow.leads.work.outbox import Clock, count_due
from leadflow.nurture.dry_run import preview_sends
from leadflow.nurture.enrollment import enroll, exit_finished
from leadflow.nurture.held import TemplateGate, count_held
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import send_due, settle_in_flight
from leadflow.nurture.outcomes import SendReport
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.steps import queue_due_steps

PREVIEW_LIMIT = 1000  # emails listed one by one in a dry run's report (all are counted)


class MissingSecretKey(RuntimeError):
    """Unsubscribe links cannot be signed without a key; sending without them is not allowed."""


class TemplatesHeld(RuntimeError):
    """Steps whose templates fail were held; raised after everything else in the run went out."""

    def __init__(self, held: dict[str, int]) -> None:
        """`held`: the report's held steps, where the error is → emails waiting."""
        emails = sum(held.values())
        lines = [f"  {where}: {n} email(s) held" for where, n in held.items()]
        super().__init__(
            f"{len(held)} nurture step(s) held because their templates fail; {emails} email(s) wait, none are lost. "
            "Fix the template (`leadflow check` shows the same errors); the next nurture run sends them:\n"
            + "\n".join(lines)
        )


def _links(ws: Workspace) -> LinkSigner:
    secret = ws.settings.secret_key
    if secret is None:
        raise MissingSecretKey("LEADFLOW_SECRET_KEY is not set; `leadflow check` says how to restore it")
    return LinkSigner(
        secret_key=secret.get_secret_value(),
        public_base_url=ws.settings.public_base_url,
        track_opens=ws.settings.track_opens,
    )


def _decide(session: Session, ws: Workspace, now: datetime) -> tuple[Counter[str], Counter[str]]:
    """Exits first (so a lead that converted is not mailed), then enrollments; the caller commits."""
    exited = exit_finished(session=session, config=ws.config, now=now)
    enrolled = enroll(session=session, config=ws.config, now=now)
    return enrolled, exited


@task(task_run_name="update enrollments", cache_policy=NONE)
def update_enrollments(ws: Workspace, now: datetime, gate: TemplateGate) -> tuple[Counter[str], Counter[str], int]:
    with session_scope(ws.engine) as session:
        enrolled, exited = _decide(session, ws, now)
    queued, first = 0, True
    while True:
        holds = gate.holds()
        with session_scope(ws.engine) as session:  # steps waiting for an event are woken with the first batch
            batch = queue_due_steps(session=session, config=ws.config, now=now, wake=first, gate=gate)
        queued, first = queued + batch, False
        if batch == 0 and gate.holds() == holds:  # a batch that only held leads back is progress too
            return enrolled, exited, queued


@task(task_run_name="send emails", cache_policy=NONE)
def send_outbox(ws: Workspace, clock: Clock, batch_size: int, gate: TemplateGate) -> SendReport:
    """Send what is due by the wall clock at each claim, so runs side by side share the outbox."""
    links = _links(ws)
    renderer = TemplateRenderer(ws.path(ws.config.templates_dir))
    total = SendReport()
    with session_scope(ws.engine) as session:
        total.unconfirmed += settle_in_flight(session=session, now=clock())
        due = count_due(session=session, table=EmailOutbox, now=clock())
    gate.check_all()  # emails queued by earlier runs too: their steps are held before the first claim
    transport = transport_from_url(ws.settings.mail_url, base_dir=ws.settings.workspace)
    with ExitStack() as stack:
        # smtp://…?connections=N: N connections side by side (a file outbox is always one).
        transports = [stack.enter_context(t) for t in transport.copies()]
        progress = stack.enter_context(step_progress("send emails", unit="emails", total=due))
        total.add(
            send_due(
                engine=ws.engine,
                transports=transports,
                clock=clock,
                batch_size=batch_size,
                gate=gate,
                config=ws.config,
                renderer=renderer,
                links=links,
                progress=progress,
            )
        )
    return total


@task(task_run_name="dry run", cache_policy=NONE)
def dry_run(ws: Workspace, now: datetime, batch_size: int) -> NurtureReport:
    """Everything a run would decide and send, in one transaction that is always rolled back."""
    links = _links(ws)
    renderer = TemplateRenderer(ws.path(ws.config.templates_dir))
    with Session(ws.engine) as session:
        try:
            enrolled, exited = _decide(session, ws, now)
            queued = 0
            while batch := queue_due_steps(session=session, config=ws.config, now=now):
                queued += batch
            preview = preview_sends(
                session=session,
                config=ws.config,
                renderer=renderer,
                links=links,
                now=now,
                batch_size=batch_size,
                limit=PREVIEW_LIMIT,
                gate=TemplateGate(ws.config, ws.path(ws.config.templates_dir)),
            )
        finally:
            session.rollback()
    return NurtureReport(
        enrolled=dict(enrolled),
        exited=dict(exited),
        queued=queued,
        unconfirmed=preview.unconfirmed,
        skipped=dict(preview.skipped),
        deferred=dict(preview.deferred),
        failed=dict(preview.failed),
        held=dict(preview.held),
        outbox=public_mail_url(ws.settings.mail_url),
        dry_run=True,
        would_send=preview.would_send,
        preview=[PreviewEmail(**asdict(row)) for row in preview.rows],
        preview_more=preview.more,
    )


@flow(name="nurture")
def nurture_flow(params: NurtureParams = NurtureParams()) -> NurtureReport:
    """Send the nurture emails that are due, honouring exits and opt-outs at send time."""
    with run_workspace(params) as ws:
        return nurture(ws, params)


def nurture(ws: Workspace, params: NurtureParams) -> NurtureReport:
    """The nurture run's work, in the workspace its flow run was given."""
    now = run_time(params.as_of)
    if params.dry_run:
        report = dry_run(ws, now, params.batch_size)
        publish_nurture(report)
        log_counts(report)
        return report
    _links(ws)  # a missing key or a bad mail URL stops the run here, before enrollments change
    try:
        transport_from_url(ws.settings.mail_url, base_dir=ws.settings.workspace)
    except ValueError as exc:  # the message never echoes the URL (it may hold a password)
        raise ValueError(f"LEADFLOW_MAIL_URL: {exc}") from None
    gate = TemplateGate(ws.config, ws.path(ws.config.templates_dir))
    with single_writer(ws.engine, "nurture:enrollments"):  # sends are shared through the outbox claim
        enrolled, exited, queued = update_enrollments(ws, now, gate)
    with slot(mail_limit(ws.settings.mail_url)):
        sent = send_outbox(ws, run_clock(params.as_of), params.batch_size, gate)
    with session_scope(ws.engine) as session:
        held = count_held(session=session, gate=gate, now=now)
    report = NurtureReport(
        enrolled=dict(enrolled),
        exited=dict(exited),
        queued=queued,
        sent=sent.sent,
        unconfirmed=sent.unconfirmed,
        skipped=dict(sent.skipped),
        deferred=dict(sent.deferred),
        failed=dict(sent.failed),
        held={h.describe(): h.emails for h in held},
        outbox=public_mail_url(ws.settings.mail_url),
    )
    report.problems = [
        Problem(step="nurture", what=f"{n} email(s) failed: {reason}") for reason, n in sorted(sent.failed.items())
    ] + [Problem(step="nurture", what=f"{n} email(s) held: {where}") for where, n in report.held.items()]
    publish_nurture(report)
    log_counts(report)
    emit_finished_sequences(ws.engine, now=now, cap=500)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    if held and params.fail_on_held_templates:
        raise TemplatesHeld(report.held)
    return finish(report)
