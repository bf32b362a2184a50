"""Builders for test data, shared across test packages: input records, and lead, activity and outbox rows.

Rows are built with the model's own defaults plus what a test names, so a test states only what it is
about; `add` stores rows in one transaction and returns their ids.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel

from leadflow.leads.db.models import Activity, EmailOutbox, HandoffOutbox, Lead

Row = TypeVar("Row", bound=SQLModel)
_serial = itertools.count(1)


def raw_event(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid activity record in the file format; override any key."""
    event: dict[str, Any] = {
        "id": f"e{n}",
        "email": f"lead{n}@example.com",
        "type": "page_view",
        "at": f"2026-09-{n % 28 + 1:02d}T10:00:00Z",
        "target": f"/page/{n}",
    }
    event.update(overrides)
    return event


def jsonl(*events: dict[str, Any]) -> str:
    """Events as JSON Lines, each line ending in a newline."""
    return "".join(json.dumps(e) + "\n" for e in events)


def lead(email: str, **fields: Any) -> Lead:
    """A lead row (not stored); any column as a keyword, the model's defaults for the rest."""
    return Lead(email=email, **fields)


def activity(
    lead_id: int | None, type: str, at: datetime, *, source: str = "test", source_id: str | None = None, **fields: Any
) -> Activity:
    """An activity row (not stored); `source_id` defaults to one unique in this test session."""
    return Activity(
        lead_id=lead_id, type=type, occurred_at=at, source=source, source_id=source_id or f"t{next(_serial)}", **fields
    )


def email_outbox(lead_id: int, *, sequence: str = "warm-up", step: int = 0, **fields: Any) -> EmailOutbox:
    """An email outbox row (not stored); its idempotency key as leadflow writes it unless given."""
    fields.setdefault("idempotency_key", f"{sequence}:{step}:{lead_id}")
    return EmailOutbox(lead_id=lead_id, sequence=sequence, step=step, **fields)


def handoff_outbox(lead_id: int, *, destination: str = "webhook:crm.example", **fields: Any) -> HandoffOutbox:
    """A handoff outbox row (not stored); its idempotency key unique to the lead and destination unless given."""
    fields.setdefault("idempotency_key", f"handoff:{lead_id}:{destination}")
    return HandoffOutbox(lead_id=lead_id, destination=destination, **fields)


def add(engine: Engine, *rows: Row) -> list[int]:
    """Store rows in one transaction, in the order given (a lead before the rows that refer to it); their ids."""
    with Session(engine, expire_on_commit=False) as session:
        for before, row in zip((None, *rows), rows, strict=False):
            if before is not None and type(row) is not type(before):
                session.flush()  # the unit of work orders tables by relationships, and ours have none
            session.add(row)
        session.commit()
    return [row.id for row in rows]  # type: ignore[attr-defined]  # every table of ours has an integer id
