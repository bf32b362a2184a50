"""The handoff payload: what sales receives about a new SQL, read the same way by every sink.

handoff/outbox.py builds the document when the SQL is queued and the outbox row keeps it as JSON,
frozen, so a retry a day later sends what sales would have seen then. `HandoffPayload.of` reads
that document into typed fields for the CRM sinks; the webhook and the file inbox send the
document itself (`document`), so a receiver gets byte for byte what was queued, whatever fields
later versions add. Fields leadflow does not know (`previous_owner` on a reassignment, say) are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from leadflow.connectors.errors import FatalHandoffError

__all__ = ["HandoffPayload", "PayloadLead", "PayloadOwner"]

Number = int | float  # as the scores were stored: 36 stays 36, 36.5 stays 36.5


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class PayloadOwner(_Part):
    """The assigned owner; `crm_ids[vendor]` is their user id in that CRM (None: not known)."""

    id: str
    name: str | None = None
    email: str | None = None
    crm_ids: dict[str, str | int | None] = Field(default_factory=dict)

    def crm_id(self, vendor: str) -> str | None:
        value = self.crm_ids.get(vendor)
        return str(value) if value not in (None, "") else None


class PayloadLead(_Part):
    """The lead as it was when it qualified: its email and profile (leads.ingest.records.PROFILE_FIELDS)."""

    email: str = Field(min_length=1)
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    company_size: int | None = None
    country: str | None = None
    timezone: str | None = None
    budget: str | None = None
    authority: str | None = None
    need: str | None = None
    timing: str | None = None
    owner: str | PayloadOwner | None = None  # the owner's id (an older payload had the owner object here)

    def value(self, field: str) -> Any:
        """A profile field by name, as a CRM field map names it; None when the payload lacks it."""
        if field in type(self).model_fields:
            return getattr(self, field)
        return (self.model_extra or {}).get(field)

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email


class PayloadScore(_Part):
    fit: Number | None = None
    engagement: Number | None = None
    total: Number | None = None


class StageStep(_Part):
    from_stage: str | None = Field(None, alias="from")
    to: str | None = None
    at: str | None = None
    reason: str | None = None


class HandoffPayload(_Part):
    """A new SQL (event `lead.sql`) or its reassignment (`lead.reassigned`), as queued."""

    event: str = "lead.sql"
    lead: PayloadLead
    owner: PayloadOwner | None = None
    qualified_at: str | None = "?"  # the defaults are what the CRM texts show for a payload without them
    reason: str | None = ""
    ruleset_version: str | None = "?"
    score: PayloadScore = Field(default_factory=PayloadScore)
    explanation: dict[str, Any] = Field(default_factory=dict)  # leads.requalify.explain.as_payload
    stage_history: list[StageStep] = Field(default_factory=list)

    _document: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> HandoffPayload:
        """Read a stored document; one that cannot be a handoff (no lead email, say) is a fatal handoff error."""
        try:
            payload = cls.model_validate(document)
        except ValidationError as exc:
            where = ".".join(str(part) for part in exc.errors()[0]["loc"])
            if where in ("lead", "lead.email"):
                raise FatalHandoffError("the handoff payload has no lead email") from None
            raise FatalHandoffError(f"the handoff payload is malformed at {where or 'its top level'}") from None
        payload._document = dict(document)
        return payload

    @property
    def document(self) -> dict[str, Any]:
        """The document as stored, for sinks that send it as it is (webhook, file inbox)."""
        return self._document

    @property
    def summary(self) -> str | None:
        summary = self.explanation.get("summary")
        return str(summary) if summary else None

    def owner_crm_id(self, vendor: str, default: str | None) -> str | None:
        """The assigned owner's user id in this CRM (owner.crm_ids[vendor]), else the default."""
        owner = self.owner if self.owner is not None else self.lead.owner  # an older payload: under "lead"
        found = owner.crm_id(vendor) if isinstance(owner, PayloadOwner) else None
        return found if found is not None else default
