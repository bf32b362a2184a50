"""A small hand-built history whose backtest answers are worked out by hand (see test_backtest.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import Engine

from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.store import store_batch

T0 = datetime(2026, 9, 1)
AS_OF = T0 + timedelta(days=28, hours=8)
_ids = count(1)

HISTORY: list[tuple[str, list[int], list[tuple[str, int]]]] = [
    # (lead, page-view days, [(other activity, day)])
    ("l1@corp.example", [1, 2, 3, 4], [("email_open", 0)]),
    ("l2@corp.example", [1, 8, 9], []),
    ("l3@corp.example", [2, 10], []),
    ("l4@corp.example", [5], []),
    ("l5@corp.example", [12], [("demo_request", 22)]),
    ("l6@corp.example", [15, 16, 17], []),
    ("l7@corp.example", [20], []),
    ("l8@rival.example", [21, 22, 23, 24], []),
    ("l9@corp.example", [25], []),
    ("l10@corp.example", [26, 27], []),
]
OUTCOMES = {
    "l1@corp.example": "won", "l2@corp.example": "won", "l3@corp.example": "lost", "l4@corp.example": "lost",
    "l5@corp.example": "won", "l6@corp.example": "lost", "l7@corp.example": "open", "l8@rival.example": "lost",
    "l9@corp.example": "open", "l10@corp.example": "won",
}  # fmt: skip


def store_events(engine: Engine, email: str, events: list[tuple[str, datetime]]) -> None:
    """One lead's activity, stored the way ingest stores it."""
    records = [
        parse_activity({"id": f"b{next(_ids)}", "email": email, "type": kind, "at": at.isoformat()}, now=AS_OF)
        for kind, at in events
    ]
    with session_scope(engine) as session:
        store_batch(session=session, source="test", records=records)


def store_history(engine: Engine) -> Engine:
    for email, views, others in HISTORY:  # lead ids follow the table's order
        events = [(kind, T0 + timedelta(days=day, hours=8 if kind == "email_open" else 9)) for kind, day in others]
        events += [("page_view", T0 + timedelta(days=day, hours=9)) for day in views]
        store_events(engine, email, sorted(events, key=lambda e: e[1]))
    return engine
