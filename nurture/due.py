"""Loading a batch of outbox rows about to be sent, with everything the compliance gate and templates need.

One query for the rows and their leads, one for the suppression log, one for the leads' recent sends
(the frequency cap), each in chunks: a batch of thousands costs a handful of round trips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.compliance import ComplianceConfig
from leadflow.leads.db.models import (
    PROFILE_FIELDS,
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Suppression,
)
from leadflow.nurture import compliance
from leadflow.nurture.suppression import ALL

# Statuses that count as "emailed" for the frequency cap.
DELIVERED = (OutboxStatus.sent.value, OutboxStatus.in_flight.value, OutboxStatus.unconfirmed.value)
_CHUNK = 5000
_T = TypeVar("_T")


@dataclass(slots=True)
class Due:
    """One outbox row about to be sent, with what the gate and the templates need of its lead."""

    row_id: int
    attempts: int
    key: str
    lead_id: int
    sequence: str
    step: int
    lead: dict[str, Any]
    recipient: compliance.Recipient


_LEAD_COLUMNS = [col(Lead.email), *(col(getattr(Lead, name)) for name in PROFILE_FIELDS)]


def load_due(
    session: Session | Connection,
    where: ColumnElement[bool],
    config: ComplianceConfig,
    now: datetime,
    limit: int | None = None,
) -> tuple[list[Due], dict[int, list[datetime]]]:
    """The rows matching `where` with their leads' facts, and each lead's recent sends (for the cap)."""
    query = (
        select(
            col(EmailOutbox.id),
            col(EmailOutbox.attempts),
            col(EmailOutbox.idempotency_key),
            col(EmailOutbox.lead_id),
            col(EmailOutbox.sequence),
            col(EmailOutbox.step),
            col(Lead.unsubscribed_at),
            col(Lead.bounced_at),
            col(NurtureEnrollment.status).label("enrollment_status"),
            col(NurtureEnrollment.exit_reason),
            *_LEAD_COLUMNS,
        )
        .join(Lead, col(Lead.id) == col(EmailOutbox.lead_id))
        .outerjoin(NurtureEnrollment, col(NurtureEnrollment.id) == col(EmailOutbox.enrollment_id))
        .where(where)
        .order_by(col(EmailOutbox.id))
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    emails = list({r.email for r in rows})
    opted_out: dict[str, dict[str, str]] = defaultdict(dict)
    for chunk in _chunks(emails, _CHUNK):
        for email, scope, reason in session.execute(
            select(col(Suppression.email), col(Suppression.scope), col(Suppression.reason)).where(
                col(Suppression.email).in_(chunk)
            )
        ):
            opted_out[email][scope] = reason
    history: dict[int, list[datetime]] = defaultdict(list)
    cap = config.frequency_cap
    if cap is not None and rows:
        lead_ids = list({r.lead_id for r in rows})
        for chunk in _chunks(lead_ids, _CHUNK):
            for lead_id, sent_at in session.execute(
                select(col(EmailOutbox.lead_id), col(EmailOutbox.sent_at)).where(
                    col(EmailOutbox.lead_id).in_(chunk),
                    col(EmailOutbox.status).in_(DELIVERED),
                    col(EmailOutbox.sent_at) > now - timedelta(days=cap.per_days),
                )
            ):
                history[lead_id].append(sent_at)
    batch = []
    for r in rows:
        profile = {name: getattr(r, name) for name in PROFILE_FIELDS}
        scopes = opted_out.get(r.email, {})
        recipient = compliance.Recipient(
            email=r.email,
            timezone=profile["timezone"],
            country=profile["country"],
            consent=profile["consent"],
            unsubscribed=r.unsubscribed_at is not None,
            bounced=r.bounced_at is not None,
            suppressed=scopes.get(ALL) or scopes.get(r.sequence),
            # A completed enrollment still sends its last step; an exited one sends nothing more.
            left_sequence=(r.exit_reason or "exited") if r.enrollment_status == EnrollmentStatus.exited else None,
        )
        lead = {"email": r.email, **profile}
        batch.append(Due(r.id, r.attempts, r.idempotency_key, r.lead_id, r.sequence, r.step, lead, recipient))
    return batch, history


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
