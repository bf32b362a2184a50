"""What a sync left in the database, in shapes that are easy to compare."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Activity, Lead, Quarantine


def activity(engine: Engine, source: str | None = None) -> list[tuple[str, str, str, datetime]]:
    """(source id, email, type, time) of every stored activity, by source id."""
    with session_scope(engine) as session:
        stmt = (
            select(Activity.source_id, Lead.email, Activity.type, Activity.occurred_at)
            .join(Lead, Lead.id == Activity.lead_id)
            .order_by(Activity.source_id)
        )
        if source is not None:
            stmt = stmt.where(Activity.source == source)
        return [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt).all()]


def leads(engine: Engine) -> dict[str, Lead]:
    with session_scope(engine) as session:
        found = {lead.email: lead for lead in session.execute(select(Lead)).scalars()}
        session.expunge_all()
        return found


def quarantine(engine: Engine) -> list[Quarantine]:
    with session_scope(engine) as session:
        rows = list(session.execute(select(Quarantine).order_by(Quarantine.id)).scalars())
        session.expunge_all()
        return rows
