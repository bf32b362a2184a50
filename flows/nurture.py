"""Nurture flow: exit, enroll, queue due steps, then send the outbox through the mail transport.

With `dry_run`, the same decisions are made in one transaction that is rolled back, and every due
email is judged and rendered but not sent: the report says per lead what would go, and why not.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from connectors.mail import public_mail_url, transport_from_url
from flows.events import emit_finished_sequences
from flows.logs import log_counts
from flows.ops import (
    mail_limit,
    publish_attention,
    publish_run_steps,
    single_writer,
    slot,
    top_level,
)
from flows.params import NurtureParams
from flows.reports import NurtureReport, PreviewEmail, publish_nurture
from flows.workspace import Workspace, open_workspace, run_time
from leads.db import session_scope
from nurture.dry_run import preview_sends
from nurture.enrollment import enroll, exit_finished, queue_due_steps
from nurture.outbox import LinkSigner, SendReport, claim, send_claimed_over, settle_in_flight
from nurture.render import TemplateRenderer

PREVIEW_LIMIT = 1000  # emails listed one by one in a dry run's report (all are counted)


class MissingSecretKey(RuntimeError):
    """Unsubscribe links cannot be signed without a key; sending without them is not allowed."""


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
def update_enrollments(ws: Workspace, now: datetime) -> tuple[Counter[str], Counter[str], int]:
    with session_scope(ws.engine) as session:
        enrolled, exited = _decide(session, ws, now)
    queued = 0
    while True:
        with session_scope(ws.engine) as session:  # steps waiting for an event are woken with the first batch
            batch = queue_due_steps(session=session, config=ws.config, now=now, wake=queued == 0)
        queued += batch
        if batch == 0:
            return enrolled, exited, queued


@task(task_run_name="send emails", cache_policy=NONE)
def send_outbox(ws: Workspace, now: datetime, batch_size: int) -> SendReport:
    links = _links(ws)
    renderer = TemplateRenderer(ws.path(ws.config.templates_dir))
    total = SendReport()
    with session_scope(ws.engine) as session:
        total.unconfirmed += settle_in_flight(session=session, now=now)
    transport = transport_from_url(ws.settings.mail_url, base_dir=ws.settings.workspace)
    with ExitStack() as stack:
        # smtp://…?connections=N: N connections side by side (a file outbox is always one).
        transports = [stack.enter_context(t) for t in transport.copies()]
        while True:
            with session_scope(ws.engine) as session:
                ids = claim(session=session, now=now, limit=batch_size)
            if not ids:
                return total
            total.add(
                send_claimed_over(
                    engine=ws.engine,
                    ids=ids,
                    transports=transports,
                    config=ws.config,
                    renderer=renderer,
                    links=links,
                    now=now,
                )
            )


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
        outbox=public_mail_url(ws.settings.mail_url),
        dry_run=True,
        would_send=preview.would_send,
        preview=[PreviewEmail(**asdict(row)) for row in preview.rows],
        preview_more=preview.more,
    )


@flow(name="nurture")
def nurture_flow(params: NurtureParams = NurtureParams()) -> NurtureReport:
    """Send the nurture emails that are due, honouring exits and opt-outs at send time."""
    ws = open_workspace(params.workspace)
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
    with single_writer(ws.engine, "nurture:enrollments"):  # sends are shared through the outbox claim
        enrolled, exited, queued = update_enrollments(ws, now)
    with slot(mail_limit(ws.settings.mail_url)):
        sent = send_outbox(ws, now, params.batch_size)
    report = NurtureReport(
        enrolled=dict(enrolled),
        exited=dict(exited),
        queued=queued,
        sent=sent.sent,
        unconfirmed=sent.unconfirmed,
        skipped=dict(sent.skipped),
        deferred=dict(sent.deferred),
        failed=dict(sent.failed),
        outbox=public_mail_url(ws.settings.mail_url),
    )
    publish_nurture(report)
    log_counts(report)
    emit_finished_sequences(ws.engine, now=now, cap=500)
    publish_run_steps()
    if top_level():
        publish_attention(ws.engine)
    return report
