"""The database side of CRM deliveries: which records a handoff already created, and the lead's CRM ids.

Each write commits on its own, right after the CRM answered, so a delivery that fails halfway (a
429 on the task after the contact was made) keeps what it created and the retry goes on from there.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from leadflow.leads.db.models import HandoffCrmRecord, Lead, utcnow
from leadflow.leads.db.sql import upsert_insert


class DatabaseLedger:
    """A DeliveryLedger (connectors/crm_handoff/common.py) on the project database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def recall(self, key: str, step: str) -> str | None:
        with Session(self.engine) as session:
            return session.exec(
                select(HandoffCrmRecord.crm_id).where(
                    col(HandoffCrmRecord.idempotency_key) == key, col(HandoffCrmRecord.step) == step
                )
            ).one_or_none()

    def remember(self, key: str, step: str, crm_id: str) -> None:
        with Session(self.engine) as session:
            session.execute(
                upsert_insert(session, HandoffCrmRecord).on_conflict_do_nothing(
                    index_elements=["idempotency_key", "step"]
                ),
                [{"idempotency_key": key, "step": step, "crm_id": crm_id, "created_at": utcnow()}],
            )
            session.commit()

    def lead_crm_id(self, email: str, destination: str) -> str | None:
        with Session(self.engine) as session:
            ids = session.exec(select(Lead.crm_ids).where(col(Lead.email) == email)).one_or_none()
        value = (ids or {}).get(destination)
        return str(value) if isinstance(value, str | int) and str(value) else None

    def save_lead_crm_id(self, email: str, destination: str, crm_id: str) -> None:
        """Keep the CRM's id for the lead in `lead.crm_ids[destination]`, beside other sources' ids."""
        with Session(self.engine) as session:
            lead = session.exec(select(Lead).where(col(Lead.email) == email).with_for_update()).one_or_none()
            if lead is None or (lead.crm_ids or {}).get(destination) == crm_id:
                return
            lead.crm_ids = {**(lead.crm_ids or {}), destination: crm_id}
            session.add(lead)
            session.commit()
