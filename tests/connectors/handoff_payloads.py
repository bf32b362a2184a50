"""A handoff payload as handoff/outbox.py builds it, with the owner object of the owner assignment."""

from __future__ import annotations

from typing import Any

from leadflow.connectors.crm_handoff.common import MemoryLedger
from leadflow.connectors.handoff_payload import HandoffPayload


def payload(
    email: str = "anna.jansen@acme-logistics.nl", *, owner: dict[str, Any] | None = None, **lead: Any
) -> HandoffPayload:
    """The payload as a sink receives it."""
    return HandoffPayload.of(document(email, owner=owner, **lead))


def document(
    email: str = "anna.jansen@acme-logistics.nl", *, owner: dict[str, Any] | None = None, **lead: Any
) -> dict[str, Any]:
    """The payload as the outbox row stores it."""
    profile = {"first_name": "Anna", "last_name": "Jansen", "company": "Acme Logistics", "title": "Head of Marketing",
               "industry": "logistics", "company_size": 250, "country": "NL", "timezone": "Europe/Amsterdam",
               "budget": None, "authority": None, "need": None, "timing": None, "owner": None, **lead}  # fmt: skip
    return {
        "event": "lead.sql",
        "lead": {"email": email, **profile},
        "owner": owner,
        "qualified_at": "2026-10-01T09:00:00Z",
        "reason": "hand raise: demo_request",
        "ruleset_version": "2026-11-demo",
        "score": {"fit": 40.0, "engagement": 80.0, "total": 120.0},
        "explanation": {
            "summary": "Anna Jansen <anna.jansen@acme-logistics.nl> — Head of Marketing\n  Pricing page +32"
        },
        "stage_history": [
            {"from": "suspect", "to": "mql", "at": "2026-09-20T09:00:00Z", "reason": "score 90 ≥ 85"},
            {"from": "mql", "to": "sql", "at": "2026-10-01T09:00:00Z", "reason": "hand raise: demo_request"},
        ],
    }


def owner(**crm_ids: str) -> dict[str, Any]:
    return {"id": "ines", "name": "Ines de Vries", "email": "ines@acme.example", "crm_ids": crm_ids}


class Sleeps(list[float]):
    """Records the waits a RetryPolicy asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


__all__ = ["MemoryLedger", "Sleeps", "document", "owner", "payload"]
