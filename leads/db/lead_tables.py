"""The lead and what is known about it: activity, stage history, suppressions, cursors, quarantine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadflow.leads.db.base import utcnow
from leadflow.leads.db.enums import EVERY_EMAIL, Stage, SuppressionReason

# The lead's profile: the fields a source may fill in (each with its Python type), all columns of `lead`.
PROFILE_FIELDS: dict[str, type] = {
    "first_name": str,
    "last_name": str,
    "company": str,
    "title": str,
    "industry": str,
    "company_size": int,
    "country": str,
    "timezone": str,
    "budget": str,
    "authority": str,
    "need": str,
    "timing": str,
    "consent": bool,  # marketing email consent: true (given) or false (withdrawn)
}


class Lead(SQLModel, table=True):
    """One person, identified by normalised email."""

    __tablename__ = "lead"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    title: str | None = Field(default=None, max_length=300)
    industry: str | None = Field(default=None, max_length=100)
    company_size: int | None = None
    country: str | None = Field(default=None, max_length=2)
    timezone: str | None = Field(default=None, max_length=64)
    budget: str | None = Field(default=None, max_length=100)
    authority: str | None = Field(default=None, max_length=100)
    need: str | None = Field(default=None, max_length=300)
    timing: str | None = Field(default=None, max_length=100)
    fit_score: float = 0.0
    engagement_score: float = 0.0
    score: float = 0.0
    stage: Stage = Field(default=Stage.suspect, sa_type=String(20), index=True)
    stage_changed_at: datetime | None = Field(default=None, sa_type=DateTime())
    owner: str | None = Field(default=None, max_length=200)
    crm_ids: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    unsubscribed_at: datetime | None = Field(default=None, sa_type=DateTime())
    bounced_at: datetime | None = Field(default=None, sa_type=DateTime())
    consent: bool | None = Field(
        default=None, description="Marketing email consent: true given, false withdrawn, empty unknown."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    last_activity_at: datetime | None = Field(default=None, index=True, sa_type=DateTime())
    scored_at: datetime | None = Field(default=None, sa_type=DateTime())
    rescore_at: datetime | None = Field(
        default=None, index=True, sa_type=DateTime(), description="When decay may next change the lead's stage."
    )
    predictive_score: float | None = Field(default=None, description="Learned won-probability, 0..1, if enabled.")


class Activity(SQLModel, table=True):
    """One event of one lead; (source, source_id) is unique so re-ingesting is a no-op."""

    __tablename__ = "activity"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_activity_source_id"),
        Index("ix_activity_lead_occurred", "lead_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    type: str = Field(max_length=40)
    occurred_at: datetime = Field(sa_type=DateTime())
    source: str = Field(max_length=100)
    source_id: str = Field(max_length=200)
    target: str | None = Field(default=None, max_length=2000)
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ingested_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class StageTransition(SQLModel, table=True):
    """An audited stage move with the score parts and the rules that caused it."""

    __tablename__ = "stage_transition"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    from_stage: Stage = Field(sa_type=String(20))
    to_stage: Stage = Field(sa_type=String(20))
    at: datetime = Field(default_factory=utcnow, index=True, sa_type=DateTime())
    fit_score: float
    engagement_score: float
    score: float
    ruleset_version: str = Field(max_length=100)
    reason: str = Field(max_length=2000)
    run_id: str | None = Field(default=None, max_length=64, index=True)


class ConnectorCursor(SQLModel, table=True):
    """Where a source's stream left off; saved in the transaction that commits the page."""

    __tablename__ = "connector_cursor"
    __table_args__ = (UniqueConstraint("source", "stream", name="uq_cursor_source_stream"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=100)
    stream: str = Field(max_length=500)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class Suppression(SQLModel, table=True):
    """Who must not get marketing email, why, since when, and from which channel; the audit log too."""

    __tablename__ = "suppression"
    __table_args__ = (UniqueConstraint("email", "scope", name="uq_suppression_email_scope"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, index=True)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    scope: str = Field(default=EVERY_EMAIL, max_length=100, description='"all", or the one sequence it applies to.')
    reason: SuppressionReason = Field(sa_type=String(20))
    source: str = Field(max_length=100, description="Where it came from: web, smtp, import, cli, ...")
    detail: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class Quarantine(SQLModel, table=True):
    """Input that was rejected, kept whole with the reason so nothing is silently lost."""

    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=100, index=True)
    location: str = Field(max_length=600)
    reason: str = Field(max_length=100, index=True)
    detail: str = Field(max_length=2000)
    raw: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
