"""Intended side effects and their bookkeeping: nurture enrollments, the email, handoff and notification
outboxes, CRM records, owners and SLAs, handoff destinations.

Every intended side effect is a row with a unique idempotency key, written in the same transaction
as the decision that caused it; senders claim rows and mark them done.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadflow.leads.db.base import utcnow
from leadflow.leads.db.enums import AssignmentStatus, EnrollmentStatus, OutboxStatus


class NurtureEnrollment(SQLModel, table=True):
    """A lead's place in one nurture sequence; `cycle` counts re-enrollments in the same sequence."""

    __tablename__ = "nurture_enrollment"
    __table_args__ = (
        UniqueConstraint("lead_id", "sequence", "cycle", name="uq_enrollment_lead_sequence_cycle"),
        Index("ix_enrollment_status_due", "status", "next_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    sequence: str = Field(max_length=100)
    cycle: int = Field(default=1, description="1 for the first time in this sequence, 2 for a re-enrollment, ...")
    step: int = Field(default=0, description="Index of the next step in the sequence's list of steps.")
    status: EnrollmentStatus = Field(default=EnrollmentStatus.active, sa_type=String(20))
    next_due_at: datetime | None = Field(
        default=None, sa_type=DateTime(), description="NULL while active: waiting for the previous email to be sent."
    )
    waiting_since: datetime | None = Field(
        default=None, sa_type=DateTime(), description="When the previous email was sent (engagement counts after)."
    )
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    exited_at: datetime | None = Field(default=None, sa_type=DateTime())
    exit_reason: str | None = Field(default=None, max_length=200)


class EmailOutbox(SQLModel, table=True):
    """One intended email; the idempotency key also fixes its Message-ID."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_email_outbox_lead_sent", "lead_id", "sent_at"),  # the frequency cap's look-back
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    enrollment_id: int | None = Field(default=None, foreign_key="nurture_enrollment.id")
    sequence: str = Field(max_length=100)
    step: int
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=String(20))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    last_error: str | None = Field(default=None, max_length=2000)
    message_id: str | None = Field(default=None, max_length=300)
    provider_id: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    sent_at: datetime | None = Field(default=None, sa_type=DateTime())


class HandoffOutbox(SQLModel, table=True):
    """One intended handoff of an SQL to one destination."""

    __tablename__ = "handoff_outbox"
    __table_args__ = (Index("ix_handoff_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    transition_id: int | None = Field(default=None, foreign_key="stage_transition.id")
    destination: str = Field(max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=String(20))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    last_error: str | None = Field(default=None, max_length=2000)
    provider_id: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime())
    requeued_at: datetime | None = Field(
        default=None, sa_type=DateTime(), description="When `leadflow handoff retry` re-drove it; restarts the horizon."
    )


class HandoffCrmRecord(SQLModel, table=True):
    """A record a handoff created in a CRM (contact, Lead, task, …), so a retried delivery skips it."""

    __tablename__ = "handoff_crm_record"
    __table_args__ = (UniqueConstraint("idempotency_key", "step", name="uq_handoff_crm_record_key_step"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, description="The handoff outbox row's key.")
    step: str = Field(max_length=40, description="contact, lead, person, task, note, deal, activity.")
    crm_id: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class LeadAssignment(SQLModel, table=True):
    """Who owns an SQL, since when, why, and what happened to the SLA; seq 0 is the first owner."""

    __tablename__ = "lead_assignment"
    __table_args__ = (
        UniqueConstraint("transition_id", "seq", name="uq_lead_assignment_transition_seq"),
        Index("ix_lead_assignment_status_due", "status", "sla_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    transition_id: int = Field(foreign_key="stage_transition.id")
    seq: int = 0
    team: str | None = Field(default=None, max_length=100)
    owner_id: str | None = Field(default=None, max_length=100, description="None: no team takes this lead.")
    reason: str = Field(max_length=500)
    status: AssignmentStatus = Field(default=AssignmentStatus.active, sa_type=String(20))
    assigned_at: datetime = Field(sa_type=DateTime())
    sla_due_at: datetime | None = Field(default=None, sa_type=DateTime())
    resolved_at: datetime | None = Field(default=None, sa_type=DateTime())


class TeamRotation(SQLModel, table=True):
    """The round-robin pointer of a team, shared by every run and worker (locked while assigning)."""

    __tablename__ = "team_rotation"

    team: str = Field(primary_key=True, max_length=100)
    last_owner: str | None = Field(default=None, max_length=100)
    assigned: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class NotificationOutbox(SQLModel, table=True):
    """One intended notification (new lead for an owner, an escalation for a manager)."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    assignment_id: int = Field(foreign_key="lead_assignment.id")
    kind: str = Field(max_length=20, description="assigned or escalated")
    recipient: str = Field(max_length=200, description="owner:ID or manager:TEAM; the URL is read from config.")
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=String(20))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    requeued_at: datetime | None = Field(default=None, sa_type=DateTime())
    sent_at: datetime | None = Field(default=None, sa_type=DateTime())


class DisabledDestination(SQLModel, table=True):
    """A destination switched off because its receiver answered 410 Gone; kept across runs."""

    __tablename__ = "handoff_destination"

    name: str = Field(primary_key=True, max_length=100)
    disabled_at: datetime = Field(sa_type=DateTime())
    reason: str = Field(max_length=500)
    url_hash: str = Field(max_length=64, description="SHA-256 of the URL then; a new URL re-enables it.")


class DestinationStart(SQLModel, table=True):
    """From which SQLs on a handoff destination receives them, recorded the first time it runs."""

    __tablename__ = "handoff_destination_start"

    name: str = Field(primary_key=True, max_length=100)
    after_transition: int | None = Field(
        default=None, description="Receives SQL transitions after this id (and any not yet handed off); NULL: all."
    )
    recorded_at: datetime = Field(sa_type=DateTime())
