"""Nurture flow: exit, enroll, queue due steps, then send the outbox through the mail transport."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from connectors.mail import transport_from_url
from flows.events import emit_finished_sequences
from flows.ops import (
    mail_limit,
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
)
from flows.params import NurtureParams
from flows.reports import NurtureReport, publish_nurture
from flows.workspace import Workspace, open_workspace, run_time
from leads.db import session_scope
from nurture.enrollment import enroll, exit_finished, queue_due_steps
from nurture.outbox import LinkSigner, SendReport, claim, send_claimed
from nurture.render import TemplateRenderer


class MissingSecretKey(RuntimeError):
    """Unsubscribe links cannot be signed without a key; sending without them is not allowed."""


@task(task_run_name="update enrollments", cache_policy=NONE)
def update_enrollments(ws: Workspace, now: datetime) -> tuple[Counter[str], Counter[str], int]:
    """Exits first (so a lead that converted is not mailed), then enrollments, then due steps."""
    with session_scope(ws.engine) as session:
        exited = exit_finished(session=session, config=ws.config, now=now)
        enrolled = enroll(session=session, config=ws.config, now=now)
    queued = 0
    while True:
        with session_scope(ws.engine) as session:
            batch = queue_due_steps(session=session, config=ws.config, now=now)
        queued += batch
        if batch == 0:
            return enrolled, exited, queued


@task(task_run_name="send emails", cache_policy=NONE)
def send_outbox(ws: Workspace, now: datetime, batch_size: int) -> SendReport:
    secret = ws.settings.secret_key
    if secret is None:
        raise MissingSecretKey("LEADFLOW_SECRET_KEY is not set; `leadflow init` writes one to the workspace .env")
    links = LinkSigner(
        secret_key=secret.get_secret_value(),
        public_base_url=ws.settings.public_base_url,
        track_opens=ws.settings.track_opens,
    )
    renderer = TemplateRenderer(ws.path(ws.config.templates_dir))
    total = SendReport()
    with transport_from_url(ws.settings.mail_url, base_dir=ws.settings.workspace) as transport:
        while True:
            with session_scope(ws.engine) as session:
                ids = claim(session=session, now=now, limit=batch_size)
            if not ids:
                return total
            report = send_claimed(
                engine=ws.engine,
                ids=ids,
                config=ws.config,
                renderer=renderer,
                transport=transport,
                links=links,
                now=now,
            )
            total.sent += report.sent
            total.skipped.update(report.skipped)
            total.deferred.update(report.deferred)
            total.failed.update(report.failed)


@flow(name="nurture")
def nurture_flow(params: NurtureParams = NurtureParams()) -> NurtureReport:
    """Send the nurture emails that are due, honouring exits and opt-outs at send time."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    with single_writer(ws.engine, "nurture:enrollments"):  # sends are shared through the outbox claim
        enrolled, exited, queued = update_enrollments(ws, now)
    with slot(mail_limit(ws.settings.mail_url)):
        sent = send_outbox(ws, now, params.batch_size)
    report = NurtureReport(
        enrolled=dict(enrolled),
        exited=dict(exited),
        queued=queued,
        sent=sent.sent,
        skipped=dict(sent.skipped),
        deferred=dict(sent.deferred),
        failed=dict(sent.failed),
        outbox=ws.settings.mail_url,
    )
    publish_nurture(report)
    emit_finished_sequences(ws.engine, now=now, cap=500)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    return report
