"""Every table, in one import: importing this module registers them all on `SQLModel.metadata` (Alembic
reads it there), and code that needs a table or a status imports it from here.

The tables live by job: `lead_tables` (leads and what is known about them), `outbox_tables` (intended
side effects and their bookkeeping), `work_tables` (rounds, shards, leases); the stored vocabularies
in `enums`, the naming convention and the clock in `base`.
"""

from __future__ import annotations

from leadflow.leads.db.base import utcnow
from leadflow.leads.db.enums import (
    EVERY_EMAIL,
    FUNNEL,
    ActivityType,
    AssignmentStatus,
    EnrollmentStatus,
    OutboxStatus,
    ShardStatus,
    Stage,
    SuppressionReason,
    funnel_rank,
)
from leadflow.leads.db.lead_tables import (
    PROFILE_FIELDS,
    Activity,
    ConnectorCursor,
    Lead,
    Quarantine,
    StageTransition,
    Suppression,
)
from leadflow.leads.db.outbox_tables import (
    DestinationStart,
    DisabledDestination,
    EmailOutbox,
    HandoffCrmRecord,
    HandoffOutbox,
    LeadAssignment,
    NotificationOutbox,
    NurtureEnrollment,
    TeamRotation,
)
from leadflow.leads.db.work_tables import WorkLease, WorkRound, WorkShard

__all__ = [
    "EVERY_EMAIL",
    "FUNNEL",
    "PROFILE_FIELDS",
    "Activity",
    "ActivityType",
    "AssignmentStatus",
    "ConnectorCursor",
    "DestinationStart",
    "DisabledDestination",
    "EmailOutbox",
    "EnrollmentStatus",
    "HandoffCrmRecord",
    "HandoffOutbox",
    "Lead",
    "LeadAssignment",
    "NotificationOutbox",
    "NurtureEnrollment",
    "OutboxStatus",
    "Quarantine",
    "ShardStatus",
    "Stage",
    "StageTransition",
    "Suppression",
    "SuppressionReason",
    "TeamRotation",
    "WorkLease",
    "WorkRound",
    "WorkShard",
    "funnel_rank",
    "utcnow",
]
