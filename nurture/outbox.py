"""Sending the email outbox: claim rows, check compliance at send time, render, send, mark.

A claimed row carries a lease (next_attempt_at in the future while it is being sent), so a
crashed sender's rows come back after the lease instead of being lost; each send is marked in
its own short transaction right after the transport accepts it, and the Message-ID is fixed by
the idempotency key, so a repeat is the same message, never a new one.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlmodel import Session

from connectors.mail import MailTransport, PermanentMailError, TransientMailError
from leads.config import WorkspaceConfig
from leads.models import EmailOutbox, Lead, OutboxStatus, utcnow
from leads.records import PROFILE_FIELDS
from nurture import links as tracked_links
from nurture import tokens
from nurture.message import build_message
from nurture.render import TemplateRenderer
from nurture.suppression import is_suppressed

LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 6


@dataclass
class SendReport:
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class LinkSigner:
    """Makes the public links an email carries: unsubscribe, tracked clicks and (optionally) an open pixel."""

    secret_key: str
    public_base_url: str
    track_opens: bool = False

    def unsubscribe_url(self, lead_id: int, sequence: str) -> str:
        token = tokens.sign(self.secret_key, "unsubscribe", lead_id, sequence)
        return f"{self.public_base_url.rstrip('/')}/u/{token}"

    def click_url(self, lead_id: int, sequence: str, step: int, url: str) -> str:
        token = tracked_links.click_token(self.secret_key, lead_id, sequence, step, url)
        return f"{self.public_base_url.rstrip('/')}/c/{token}"

    def open_url(self, lead_id: int, sequence: str, step: int) -> str:
        token = tracked_links.open_token(self.secret_key, lead_id, sequence, step)
        return f"{self.public_base_url.rstrip('/')}/o/{token}.gif"

    def track(self, html: str, *, lead_id: int, sequence: str, step: int) -> str:
        """The HTML part with its web links made tracked clicks (never the unsubscribe link), and the pixel."""
        html = tracked_links.rewrite_links(
            html,
            lambda url: self.click_url(lead_id, sequence, step, url),
            keep={self.unsubscribe_url(lead_id, sequence)},
        )
        return tracked_links.add_open_pixel(html, self.open_url(lead_id, sequence, step)) if self.track_opens else html


def claim(*, session: Session, now: datetime, limit: int) -> list[int]:
    """Take up to `limit` due rows (pending, or sending with an expired lease) for this sender."""
    due = (
        select(EmailOutbox.id)
        .where(
            or_(EmailOutbox.status == OutboxStatus.pending, EmailOutbox.status == OutboxStatus.sending),
            EmailOutbox.next_attempt_at <= now,
        )
        .order_by(EmailOutbox.next_attempt_at, EmailOutbox.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = [row for row in session.execute(due).scalars()]
    if ids:
        session.execute(
            update(EmailOutbox)
            .where(EmailOutbox.id.in_(ids))
            .values(status=OutboxStatus.sending.value, next_attempt_at=now + LEASE, attempts=EmailOutbox.attempts + 1)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return ids


def lead_context(lead: Lead) -> dict[str, Any]:
    """What templates may use of a lead: its profile fields and email, nothing internal."""
    return {"email": lead.email, **{name: getattr(lead, name) for name in PROFILE_FIELDS}}


def send_claimed(
    *,
    engine: Engine,
    ids: list[int],
    config: WorkspaceConfig,
    renderer: TemplateRenderer,
    transport: MailTransport,
    links: LinkSigner,
    now: datetime,
) -> SendReport:
    """Send the claimed rows through an open transport; each outcome is committed on its own."""
    report = SendReport()
    steps = {s.name: s.steps for s in config.nurture.sequences}
    for row_id in ids:
        with Session(engine) as session:
            row = session.get(EmailOutbox, row_id)
            lead = session.get(Lead, row.lead_id) if row else None
            if row is None or lead is None or row.status != OutboxStatus.sending:
                continue
            blocked = _compliance_block(session, lead, row.sequence)
            if blocked or row.sequence not in steps or row.step >= len(steps[row.sequence]):
                reason = blocked or "step no longer in config"
                _finish(session, row, OutboxStatus.skipped, error=reason)
                report.skipped[reason] += 1
                continue
            step = steps[row.sequence][row.step]
            context = {
                "lead": lead_context(lead),
                "sender": config.sender.model_dump(),
                "unsubscribe_url": links.unsubscribe_url(lead.id, row.sequence),
            }  # type: ignore[arg-type]
            try:
                rendered = renderer.render(template=step.template, subject=step.subject, context=context)
            except Exception as exc:  # one broken template must not hold back the rest of the batch
                _finish(
                    session, row, OutboxStatus.failed, error=f"template {step.template}: {type(exc).__name__}: {exc}"
                )
                report.failed["template error"] += 1
                continue
            tracked = links.track(rendered.html, lead_id=lead.id, sequence=row.sequence, step=row.step)  # type: ignore[arg-type]
            message = build_message(
                sender=config.sender,
                to=lead.email,
                rendered=replace(rendered, html=tracked),
                idempotency_key=row.idempotency_key,
                unsubscribe_url=context["unsubscribe_url"],
            )
            try:
                provider_id = transport.send(message)
            except PermanentMailError as exc:
                lead.bounced_at = lead.bounced_at or utcnow()
                _finish(session, row, OutboxStatus.failed, error=f"permanent: {exc}")
                report.failed["permanent"] += 1
                continue
            except TransientMailError as exc:
                _retry_later(session, row, str(exc), now)
                report.deferred["transient mail error"] += 1
                continue
            row.message_id = message["Message-ID"]
            _finish(session, row, OutboxStatus.sent, provider_id=provider_id)
            report.sent += 1
    return report


def _compliance_block(session: Session, lead: Lead, sequence: str) -> str | None:
    """Checked at send time, not only at enrollment: the lead may have opted out since."""
    if lead.unsubscribed_at is not None:
        return "unsubscribed"
    if lead.bounced_at is not None:
        return "bounced"
    if is_suppressed(session=session, email=lead.email, sequence=sequence):
        return "suppressed"
    return None


def _finish(
    session: Session,
    row: EmailOutbox,
    status: OutboxStatus,
    *,
    error: str | None = None,
    provider_id: str | None = None,
) -> None:
    row.status = status
    row.last_error = error[:2000] if error else None
    row.provider_id = provider_id
    if status == OutboxStatus.sent:
        row.sent_at = utcnow()
    session.add(row)
    session.commit()


def _retry_later(session: Session, row: EmailOutbox, error: str, now: datetime) -> None:
    """Exponential backoff with jitter; after MAX_ATTEMPTS the row is dead and shown in the report."""
    if row.attempts >= MAX_ATTEMPTS:
        _finish(session, row, OutboxStatus.dead, error=error)
        return
    delay = min(3600.0, 30.0 * 2 ** (row.attempts - 1)) * random.uniform(0.8, 1.2)
    row.status = OutboxStatus.pending
    row.next_attempt_at = now + timedelta(seconds=delay)
    row.last_error = error[:2000]
    session.add(row)
    session.commit()
