"""One nurture run's steps before and around sending: decisions, queueing, the dry run, held steps.

Flows call these in order (flows/nurture.py); each opens its own transactions on `engine`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox
from leadflow.leads.work.outbox import count_due
from leadflow.nurture.dry_run import preview_sends
from leadflow.nurture.enrollment import enroll, exit_finished
from leadflow.nurture.held import HeldStep, TemplateGate, count_held
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import settle_in_flight
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.report import EnrollmentChanges, NurtureReport, dry_run_report
from leadflow.nurture.steps import queue_due_steps


def decide(session: Session, config: WorkspaceConfig, now: datetime) -> EnrollmentChanges:
    """Exits first (so a lead that converted is not mailed), then enrollments; the caller commits."""
    exited = exit_finished(session=session, config=config, now=now)
    enrolled = enroll(session=session, config=config, now=now)
    return EnrollmentChanges(enrolled=enrolled, exited=exited)


def update_enrollments(engine: Engine, config: WorkspaceConfig, now: datetime, gate: TemplateGate) -> EnrollmentChanges:
    """Exits and enrollments in one transaction, then due steps queued batch by batch (held steps wait)."""
    with session_scope(engine) as session:
        changes = decide(session, config, now)
    first = True
    while True:
        holds = gate.holds()
        with session_scope(engine) as session:  # steps waiting for an event are woken with the first batch
            batch = queue_due_steps(session=session, config=config, now=now, wake=first, gate=gate)
        changes.queued, first = changes.queued + batch, False
        if batch == 0 and gate.holds() == holds:  # a batch that only held leads back is progress too
            return changes


def ready_to_send(engine: Engine, now: datetime) -> tuple[int, int]:
    """Settle what a dead sender left in flight (as unconfirmed), then count what is due:
    (unconfirmed, due)."""
    with session_scope(engine) as session:
        unconfirmed = settle_in_flight(session=session, now=now)
        return unconfirmed, count_due(session=session, table=EmailOutbox, now=now)


def held_steps(engine: Engine, gate: TemplateGate, now: datetime) -> list[HeldStep]:
    """The steps `gate` held this run that held emails back, with how many wait."""
    with session_scope(engine) as session:
        return count_held(session=session, gate=gate, now=now)


def dry_run(
    engine: Engine,
    config: WorkspaceConfig,
    now: datetime,
    *,
    renderer: TemplateRenderer,
    links: LinkSigner,
    gate: TemplateGate,
    batch_size: int,
    limit: int,
    outbox: str,
) -> NurtureReport:
    """Everything a run would decide and send, in one transaction that is always rolled back.
    The first `limit` emails are listed one by one (all are counted)."""
    with Session(engine) as session:
        try:
            changes = decide(session, config, now)
            while batch := queue_due_steps(session=session, config=config, now=now):
                changes.queued += batch
            preview = preview_sends(
                session=session,
                config=config,
                renderer=renderer,
                links=links,
                now=now,
                batch_size=batch_size,
                limit=limit,
                gate=gate,
            )
        finally:
            session.rollback()
    return dry_run_report(changes, preview, outbox)
