"""Sending one claimed row: the compliance gate at send time, the template, the transport, the mark.

Every answer of the mail server has one consequence: accepted (sent), refused for good (failed,
the address suppressed), maybe accepted (unconfirmed, never sent again), or refused for now (back
to pending with backoff, dead after MAX_ATTEMPTS). A template that fails holds the row, unconsumed;
an address only an SMTPUTF8 server could take fails that lead's email with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from leadflow.connectors.backoff import OUTBOX_BACKOFF
from leadflow.connectors.errors import PermanentMailError, TransientMailError, UnconfirmedMailError
from leadflow.connectors.mail import MailTransport
from leadflow.leads.db.models import OutboxStatus, SuppressionReason
from leadflow.leads.work.outbox import Clock
from leadflow.nurture import compliance
from leadflow.nurture.composer import Composer, StepGone, held_error
from leadflow.nurture.due import Due
from leadflow.nurture.marks import LeaseLost, Marks
from leadflow.nurture.message import NeedsSmtpUtf8
from leadflow.nurture.outcomes import Outcome
from leadflow.nurture.suppression import ALL, suppress

# A held row is due again just after this run's clock: a later run takes it, this one never spins on it.
HOLD_PAUSE = timedelta(seconds=1)
MAX_ATTEMPTS = 6


def send_one(
    marks: Marks, composer: Composer, transport: MailTransport, due: Due, sent: Sequence[datetime], clock: Clock
) -> tuple[Outcome, str, datetime]:
    """Judge, render and deliver one row; returns what became of it, why (for all but sent), and when."""
    now = clock()
    verdict = compliance.check(composer.config.compliance, due.recipient, sent, now)
    if verdict.action == "skip":
        marks.later("finish", due, st=OutboxStatus.skipped.value, err=verdict.reason)
        return Outcome.skipped, verdict.reason, now
    if verdict.action == "defer":
        marks.later("defer", due, until=verdict.until, err=f"deferred: {verdict.reason}")
        return Outcome.deferred, verdict.reason, now
    gate = composer.gate
    if gate is not None and gate.is_held(due.sequence, due.step):
        marks.later("defer", due, until=now + HOLD_PAUSE, err="held: the step's template fails; sent once it is fixed")
        return Outcome.held, f"{due.sequence} step {due.step + 1}", now
    try:
        envelope = composer.envelope(due)
    except StepGone as exc:
        marks.later("finish", due, st=OutboxStatus.skipped.value, err=str(exc))
        return Outcome.skipped, str(exc), now
    except NeedsSmtpUtf8 as exc:  # this lead's address, not the template: fails alone, holds nothing
        marks.later("finish", due, st=OutboxStatus.failed.value, err=str(exc)[:2000])
        return Outcome.failed, "needs SMTPUTF8", now
    except Exception as exc:  # a broken template holds its email (and step), never consumes it
        marks.later("defer", due, until=now + HOLD_PAUSE, err=held_error(composer, due, exc)[:2000])
        return Outcome.held, f"{due.sequence} step {due.step + 1}", now
    try:
        provider_id = transport.deliver(envelope, before_data=lambda: marks.in_flight(due, envelope, clock()))
    except LeaseLost:
        return Outcome.skipped, "lease taken over by another sender", now
    except PermanentMailError as exc:
        marks.connection.rollback()
        with Session(bind=marks.connection) as session:
            suppress(
                session=session,
                lead_id=due.lead_id,
                scope=ALL,
                reason=SuppressionReason.bounced,
                source="smtp",
                now=clock(),
                detail=str(exc),
            )
            session.commit()
        marks.now("finish", due, st=OutboxStatus.failed.value, err=f"permanent: {exc}"[:2000])
        return Outcome.failed, "bounced", now
    except UnconfirmedMailError as exc:
        at = clock()
        marks.now("unconfirmed", due, at=at, mid=envelope.message_id, err=str(exc)[:2000])
        return Outcome.unconfirmed, "", at
    except TransientMailError as exc:
        if _retry_later(marks, due, str(exc), clock()):
            return Outcome.deferred, "transient mail error", now
        return Outcome.failed, "gave up after retries", now
    accepted = clock()  # the server has answered: this is when it took the message
    marks.later("sent", due, at=accepted, mid=envelope.message_id, pid=provider_id[:300])
    return Outcome.sent, "", accepted


def _retry_later(marks: Marks, due: Due, error: str, now: datetime) -> bool:
    """Exponential backoff with jitter; after MAX_ATTEMPTS the row is dead (returns False) and shown in the report."""
    if due.attempts >= MAX_ATTEMPTS:
        marks.now("finish", due, st=OutboxStatus.dead.value, err=error[:2000])
        return False
    delay = OUTBOX_BACKOFF.wait(due.attempts)
    marks.now("retry", due, until=now + timedelta(seconds=delay), err=error[:2000])
    return True
