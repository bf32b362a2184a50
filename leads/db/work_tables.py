"""Shared work: rounds of shards that workers on any machine claim, and named leases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadflow.leads.db.base import utcnow
from leadflow.leads.db.enums import ShardStatus


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
