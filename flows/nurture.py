"""Nurture flow: exit, enroll, queue due steps, then send the outbox through the mail transport.

With `dry_run`, the same decisions are made in one transaction that is rolled back, and every due
email is judged and rendered but not sent: the report says per lead what would go, and why not.

The templates of every due step are checked before anything is queued or sent; a step whose
template fails is held (nurture/held.py), the rest goes out, and the run then fails naming file and line.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE
from pydantic import BaseModel

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
from leadflow.flows.problems import RunFailed, finish
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import publish_nurture
from leadflow.flows.workspace import Workspace, run_clock, run_time, run_workspace
from leadflow.leads.work.outbox import Clock
from leadflow.nurture import run as nurture_run
from leadflow.nurture.held import TemplateGate
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import send_due
from leadflow.nurture.outcomes import SendReport
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.report import EnrollmentChanges, NurtureReport, nurture_report

PREVIEW_LIMIT = 1000  # emails listed one by one in a dry run's report (all are counted)


class MissingSecretKey(RuntimeError):
    """Unsubscribe links cannot be signed without a key; sending without them is not allowed."""


class TemplatesHeld(RunFailed):
    """Steps whose templates fail were held; raised after everything else in the run went out."""

    def __init__(self, held: dict[str, int], *, report: BaseModel | None = None) -> None:
        """`held`: the report's held steps, where the error is → emails waiting; `report`: what the run did."""
        emails = sum(held.values())
        lines = [f"  {where}: {n} email(s) held" for where, n in held.items()]
        super().__init__(
            f"{len(held)} nurture step(s) held because their templates fail; {emails} email(s) wait, none are lost. "
            "Fix the template (`leadflow check` shows the same errors); the next nurture run sends them:\n"
            + "\n".join(lines),
            report=report,
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


@task(task_run_name="update enrollments", cache_policy=NONE)
def update_enrollments(ws: Workspace, now: datetime, gate: TemplateGate) -> EnrollmentChanges:
    return nurture_run.update_enrollments(ws.engine, ws.config, now, gate)


@task(task_run_name="send emails", cache_policy=NONE)
def send_outbox(ws: Workspace, clock: Clock, batch_size: int, gate: TemplateGate) -> SendReport:
    """Send what is due by the wall clock at each claim, so runs side by side share the outbox."""
    links = _links(ws)
    renderer = TemplateRenderer(ws.path(ws.config.templates_dir))
    total = SendReport()
    total.unconfirmed, due = nurture_run.ready_to_send(ws.engine, clock())
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
    templates = ws.path(ws.config.templates_dir)
    return nurture_run.dry_run(
        ws.engine,
        ws.config,
        now,
        renderer=TemplateRenderer(templates),
        links=_links(ws),
        gate=TemplateGate(ws.config, templates),
        batch_size=batch_size,
        limit=PREVIEW_LIMIT,
        outbox=public_mail_url(ws.settings.mail_url),
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
        changes = update_enrollments(ws, now, gate)
    with slot(mail_limit(ws.settings.mail_url)):
        sent = send_outbox(ws, run_clock(params.as_of), params.batch_size, gate)
    held = nurture_run.held_steps(ws.engine, gate, now)
    report = nurture_report(changes, sent, held, outbox=public_mail_url(ws.settings.mail_url))
    publish_nurture(report)
    log_counts(report)
    emit_finished_sequences(ws.engine, now=now, cap=500)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    if held and params.fail_on_held_templates:
        raise TemplatesHeld(report.held, report=report)
    return finish(report)
