"""What a nurture run would send, and why anything would not go, without sending or storing anything.

The caller runs exits, enrollment and queuing in one transaction and rolls it back afterwards;
`preview_sends` then walks every due outbox row in that same transaction through the same gate
and the same templates as a real send (so a template error or a missing field shows up here, as
the hold a real run would put on that step, with file and line), but never claims a row or
touches a transport.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import EmailOutbox, OutboxStatus
from leadflow.nurture import compliance
from leadflow.nurture.composer import Composer, StepGone, held_error
from leadflow.nurture.due import load_due
from leadflow.nurture.held import TemplateGate
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.message import NeedsSmtpUtf8
from leadflow.nurture.render import TemplateRenderer


@dataclass(frozen=True)
class PreviewRow:
    """One email: `send`, or `skip`/`defer`/`hold` with the reason (and, for defer, when it would go)."""

    email: str
    sequence: str
    step: int
    outcome: str
    reason: str = ""
    subject: str = ""
    until: datetime | None = None


@dataclass
class Preview:
    would_send: int = 0
    unconfirmed: int = 0  # rows a dead sender left in flight: they would be settled, never sent
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)  # by where the template fails, as a real run would hold
    rows: list[PreviewRow] = field(default_factory=list)  # the first `limit` emails, in outbox order
    more: int = 0  # emails beyond `limit`, counted above but not listed


def preview_sends(
    *,
    session: Session,
    config: WorkspaceConfig,
    renderer: TemplateRenderer,
    links: LinkSigner,
    now: datetime,
    batch_size: int = 1000,
    limit: int = 1000,
    gate: TemplateGate | None = None,
) -> Preview:
    """Every email due at `now`, judged as a send at `now` would judge it; reads only."""
    preview = Preview()
    composer = Composer(config, renderer, links, gate)
    preview.unconfirmed = (
        session.scalar(
            select(func.count())
            .select_from(EmailOutbox)
            .where(col(EmailOutbox.status) == OutboxStatus.in_flight, col(EmailOutbox.next_attempt_at) <= now)
        )
        or 0
    )
    due = and_(
        or_(col(EmailOutbox.status) == OutboxStatus.pending, col(EmailOutbox.status) == OutboxStatus.sending),
        col(EmailOutbox.next_attempt_at) <= now,
    )
    planned: dict[int, list[datetime]] = defaultdict(list)  # sends this run would make, for the cap
    last_id = 0
    while True:
        batch, history = load_due(session, and_(due, col(EmailOutbox.id) > last_id), config.compliance, now, batch_size)
        if not batch:
            return preview
        last_id = batch[-1].row_id
        for item in batch:
            sent = [*history.get(item.lead_id, ()), *planned.get(item.lead_id, ())]
            verdict = compliance.check(config.compliance, item.recipient, sent, now)
            row = PreviewRow(item.recipient.email, item.sequence, item.step, verdict.action, verdict.reason)
            if verdict.action == "skip":
                preview.skipped[verdict.reason] += 1
            elif verdict.action == "defer":
                preview.deferred[verdict.reason] += 1
                row = replace(row, until=verdict.until)
            else:
                try:
                    rendered, _ = composer.message(item)
                except StepGone as exc:
                    preview.skipped[str(exc)] += 1
                    row = PreviewRow(item.recipient.email, item.sequence, item.step, "skip", str(exc))
                except NeedsSmtpUtf8:  # as a real send: this lead's email fails, nothing is held
                    preview.failed["needs SMTPUTF8"] += 1
                    row = PreviewRow(item.recipient.email, item.sequence, item.step, "fail", "needs SMTPUTF8")
                except Exception as exc:  # reported per email: a real run holds it until the template is fixed
                    reason = held_error(composer, item, exc).removeprefix("held: ")
                    preview.held[reason] += 1
                    row = PreviewRow(item.recipient.email, item.sequence, item.step, "hold", reason)
                else:
                    preview.would_send += 1
                    planned[item.lead_id].append(now)
                    row = PreviewRow(item.recipient.email, item.sequence, item.step, "send", "", rendered.subject)
            if len(preview.rows) < limit:
                preview.rows.append(row)
            else:
                preview.more += 1
