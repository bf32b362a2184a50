"""What an admin may have to act on, in the whole database: dead letters, failures, quarantine, backlogs."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from leadflow.leads.db.models import EmailOutbox, HandoffOutbox, NotificationOutbox, OutboxStatus, Quarantine


def attention_counts(session: Session) -> dict[str, int]:
    """Rows per kind of trouble, keyed as the `leadflow-attention` artifact names them."""
    email: dict[str, int] = {
        str(status): n
        for status, n in session.exec(
            select(col(EmailOutbox.status), func.count())
            .where(col(EmailOutbox.status).in_([OutboxStatus.dead.value, OutboxStatus.failed.value]))
            .group_by(col(EmailOutbox.status))
        ).all()
    }
    waiting = [OutboxStatus.pending.value, OutboxStatus.sending.value]
    handoffs_dead = session.exec(
        select(func.count()).select_from(HandoffOutbox).where(col(HandoffOutbox.status) == OutboxStatus.dead.value)
    ).one()
    quarantined = session.exec(select(func.count()).select_from(Quarantine)).one()
    handoffs_waiting = session.exec(
        select(func.count()).select_from(HandoffOutbox).where(col(HandoffOutbox.status).in_(waiting))
    ).one()
    notifications_waiting = session.exec(
        select(func.count()).select_from(NotificationOutbox).where(col(NotificationOutbox.status).in_(waiting))
    ).one()
    return {
        "handoffs_waiting": handoffs_waiting,
        "notifications_waiting": notifications_waiting,
        "emails_dead": email.get(OutboxStatus.dead.value, 0),
        "emails_failed": email.get(OutboxStatus.failed.value, 0),
        "handoffs_dead": handoffs_dead,
        "quarantined": quarantined,
    }
