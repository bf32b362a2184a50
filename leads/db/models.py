"""SQLModel tables: leads, their activity, stage history, nurture state, outboxes, cursors, quarantine.

Every intended side effect (an email, a handoff) is a row with a unique idempotency key, written
in the same transaction as the decision that caused it; senders claim rows and mark them done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

# Named constraints, so later SQLite batch migrations can drop or alter them by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no zone, so every timestamp in the database is UTC without tzinfo.

    Datetime columns say sa_type=DateTime() because recent SQLModel maps a bare `datetime`
    to a timezone-aware type that rejects naive values.
    """
    return datetime.now(UTC).replace(tzinfo=None)


# Enum columns are stored as plain strings (sa_type=String): adding a stage or status later is a
# config change, not a PostgreSQL ENUM migration.


class Stage(StrEnum):
    """Funnel stages in order; `disqualified` and `recycled` sit beside the funnel."""

    suspect = "suspect"
    prospect = "prospect"
    hot_prospect = "hot_prospect"
    mql = "mql"
    sql = "sql"
    customer = "customer"
    disqualified = "disqualified"
    recycled = "recycled"


FUNNEL: tuple[Stage, ...] = (
    Stage.suspect,
    Stage.prospect,
    Stage.hot_prospect,
    Stage.mql,
    Stage.sql,
    Stage.customer,
)


_RANKS = {stage: rank for rank, stage in enumerate(FUNNEL)}


def funnel_rank(stage: Stage) -> int:
    """Position in the funnel; stages beside it (recycled, disqualified) rank as suspect."""
    return _RANKS.get(stage, 0)


class ActivityType(StrEnum):
    """The activity vocabulary. Sources map their own event names onto these."""

    page_view = "page_view"
    email_open = "email_open"
    email_click = "email_click"
    email_reply = "email_reply"
    email_bounce = "email_bounce"
    unsubscribe = "unsubscribe"
    download = "download"
    webinar = "webinar"
    form_submit = "form_submit"
    newsletter_signup = "newsletter_signup"
    cart_add = "cart_add"
    wishlist_add = "wishlist_add"
    ad_click = "ad_click"
    demo_request = "demo_request"
    quote_request = "quote_request"
    contact_sales = "contact_sales"
    # Outcomes reported by sales or the CRM; they move stages directly (see leads/scoring/stages.py).
    sales_accepted = "sales_accepted"
    sales_rejected = "sales_rejected"
    sales_disqualified = "sales_disqualified"
    deal_won = "deal_won"
    deal_lost = "deal_lost"


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed under a lease; nothing handed to the mail server yet
    in_flight = "in_flight"  # the message is being handed over (SMTP DATA); never sent again
    sent = "sent"
    unconfirmed = "unconfirmed"  # was in flight when its sender died: counted as sent, not confirmed
    skipped = "skipped"
    failed = "failed"
    dead = "dead"


class EnrollmentStatus(StrEnum):
    active = "active"
    completed = "completed"
    exited = "exited"


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
    next_due_at: datetime | None = Field(default=None, sa_type=DateTime())
    waiting_since: datetime | None = Field(
        default=None, sa_type=DateTime(), description="When the previous step was queued (engagement counts after)."
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


class ConnectorCursor(SQLModel, table=True):
    """Where a source's stream left off; saved in the transaction that commits the page."""

    __tablename__ = "connector_cursor"
    __table_args__ = (UniqueConstraint("source", "stream", name="uq_cursor_source_stream"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=100)
    stream: str = Field(max_length=500)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


class SuppressionReason(StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    manual = "manual"


EVERY_EMAIL = "all"  # the scope of a suppression from all marketing email (else: one sequence's name)


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


class HandoffCrmRecord(SQLModel, table=True):
    """A record a handoff created in a CRM (contact, Lead, task, …), so a retried delivery skips it."""

    __tablename__ = "handoff_crm_record"
    __table_args__ = (UniqueConstraint("idempotency_key", "step", name="uq_handoff_crm_record_key_step"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, description="The handoff outbox row's key.")
    step: str = Field(max_length=40, description="contact, lead, person, task, note, deal, activity.")
    crm_id: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())


# --- owners, SLA and notifications (handoff/assignment.py, handoff/notify.py) ------------------


class AssignmentStatus(StrEnum):
    active = "active"  # the owner has the lead; its SLA (if any) is running
    met = "met"  # the SLA was met (or the lead left SQL): nothing more to watch
    reassigned = "reassigned"  # the SLA was breached and the lead went to the next owner
    escalated = "escalated"  # the SLA was breached and a manager was told


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


class ShardStatus(StrEnum):
    pending = "pending"
    claimed = "claimed"
    done = "done"


class WorkRound(SQLModel, table=True):
    """One planned pass of a job (a requalify run) whose shards workers on any machine claim.

    `open_job` holds the job's name while the round is open and NULL once it is closed; it is
    unique, so a job has at most one open round and two workers that plan at once end up in one.
    """

    __tablename__ = "work_round"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=50, index=True)
    open_job: str | None = Field(default=None, max_length=50, unique=True)
    mode: str = Field(default="full", max_length=20)
    as_of: datetime = Field(sa_type=DateTime(), description="The run time every shard of the round is scored at.")
    shards: int = 0
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime())
    closed_by: str | None = Field(default=None, max_length=64)
    closed_at: datetime | None = Field(default=None, sa_type=DateTime())


class WorkShard(SQLModel, table=True):
    """A slice of a round's leads (an id range, or a list of due ids inside it), claimed by one worker at a time."""

    __tablename__ = "work_shard"
    __table_args__ = (
        UniqueConstraint("round_id", "seq", name="uq_work_shard_round_seq"),
        Index("ix_work_shard_round_status", "round_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="work_round.id")
    seq: int
    lo: int
    hi: int
    ids: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: ShardStatus = Field(default=ShardStatus.pending, sa_type=String(20))
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=DateTime())
    attempts: int = 0
    done_at: datetime | None = Field(default=None, sa_type=DateTime())
    leads: int = 0
    changes: int = 0


class WorkLease(SQLModel, table=True):
    """A named lease: a step that must have one writer at a time across processes and machines.

    The holder's process (host, pid, pid scope and start) lets a run on the same machine see at once
    that it died; its heartbeat keeps `expires_at` ahead of now while it lives (see leads.leases).
    """

    __tablename__ = "work_lease"

    name: str = Field(primary_key=True, max_length=200)
    holder: str | None = Field(default=None, max_length=64)
    acquired_at: datetime | None = Field(default=None, sa_type=DateTime())
    expires_at: datetime | None = Field(default=None, sa_type=DateTime())
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    pid_scope: str | None = Field(default=None, max_length=200)
    pid_start: int | None = Field(default=None, sa_type=BigInteger())
    heartbeat_at: datetime | None = Field(default=None, sa_type=DateTime())
