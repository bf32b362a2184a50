"""Where a source's streams left off: one `connector_cursor` row per (source, stream), saved in the
transaction that stores the page it follows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.db.models import ConnectorCursor, utcnow
from leadflow.leads.db.sql import upsert_insert


def load_cursor(session: Session, *, source: str, stream: str) -> dict[str, Any] | None:
    row = session.execute(
        select(col(ConnectorCursor.value)).where(
            col(ConnectorCursor.source) == source, col(ConnectorCursor.stream) == stream
        )
    ).scalar_one_or_none()
    return dict(row) if row is not None else None


def save_cursor(session: Session, *, source: str, stream: str, value: dict[str, Any]) -> None:
    stmt = upsert_insert(session, ConnectorCursor).values(
        source=source, stream=stream, value=value, updated_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "stream"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
    )
