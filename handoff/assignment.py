"""Giving each new SQL an owner: territory picks the team, round robin picks the person.

The round-robin pointer lives in `team_rotation` and is locked while a team assigns, so runs on
several workers share one fair rotation. Owners at capacity (`max_open_sqls` SQLs they still
own) are skipped; when the whole team is full the team's `fallback` takes the lead, or, without
one, the lead waits (no assignment, no handoff) and is tried again on the next run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlmodel import Session, col

from leadflow.leads.config.assignment import CRM_VENDORS, AssignmentConfig, Owner, Team
from leadflow.leads.db.models import (
    AssignmentStatus,
    HandoffOutbox,
    Lead,
    LeadAssignment,
    NotificationOutbox,
    Stage,
    StageTransition,
    TeamRotation,
)
from leadflow.leads.db.sql import upsert_insert

NO_TEAM = "-"  # the rotation row locked while recording leads no team takes (it has no pointer to move)


@dataclass
class AssignReport:
    assigned: Counter[str] = field(default_factory=Counter)  # by owner id
    unassigned: int = 0  # no team takes the lead: handed off without an owner
    waiting: int = 0  # every owner of the team is at capacity and there is no fallback


@dataclass(frozen=True)
class Choice:
    owner: Owner | None
    reason: str


def team_for(config: AssignmentConfig, lead: Lead) -> Team | None:
    """The first team whose territory matches the lead (a team without a territory matches all)."""
    for team in config.teams:
        if team.territory is None or team.territory.matches(
            country=lead.country, industry=lead.industry, company_size=lead.company_size
        ):
            return team
    return None


def open_sqls(session: Session) -> Counter[str]:
    """How many SQLs each owner holds now: their load against `max_open_sqls`."""
    rows = session.execute(
        select(col(Lead.owner), func.count())
        .where(col(Lead.stage) == Stage.sql.value, col(Lead.owner).is_not(None))
        .group_by(col(Lead.owner))
    ).all()
    return Counter({owner: count for owner, count in rows})


def lock_rotation(session: Session, team: str) -> TeamRotation:
    """The team's pointer row, created if new and locked (PostgreSQL) until the transaction ends."""
    session.execute(upsert_insert(session, TeamRotation).on_conflict_do_nothing(), [{"team": team, "assigned": 0}])
    query = select(TeamRotation).where(col(TeamRotation.team) == team)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    rotation: TeamRotation = session.execute(query.execution_options(populate_existing=True)).scalar_one()
    return rotation


def next_owner(
    config: AssignmentConfig, team: Team, rotation: TeamRotation, load: Counter[str], exclude: set[str]
) -> Owner | None:
    """The owner after the last one given a lead, skipping full and excluded owners."""
    members = [config.owner(o) for o in team.owners]
    start = team.owners.index(rotation.last_owner) + 1 if rotation.last_owner in team.owners else 0
    for i in range(len(members)):
        owner = members[(start + i) % len(members)]
        if owner is None or owner.id in exclude:
            continue
        if owner.max_open_sqls is not None and load[owner.id] >= owner.max_open_sqls:
            continue
        return owner
    return None


def choose(
    session: Session,
    config: AssignmentConfig,
    team: Team,
    load: Counter[str],
    exclude: Collection[str] = (),
) -> Choice:
    """Pick and record the next owner of a team (moves the pointer); None when all are full."""
    rotation = lock_rotation(session, team.name)
    owner = next_owner(config, team, rotation, load, set(exclude))
    if owner is not None:
        rotation.last_owner, rotation.assigned = owner.id, rotation.assigned + 1
        session.add(rotation)
        return Choice(owner, f"round robin in team {team.name}")
    fallback = config.owner(team.fallback) if team.fallback else None
    if fallback is not None and fallback.id not in exclude:
        return Choice(fallback, f"team {team.name} at capacity: fallback owner")
    return Choice(None, f"team {team.name} at capacity")


def record(
    session: Session,
    config: AssignmentConfig,
    *,
    lead: Lead,
    transition_id: int,
    seq: int,
    team: Team | None,
    choice: Choice,
    now: datetime,
) -> LeadAssignment:
    """Write the assignment, set lead.owner and queue the owner's notification (one transaction)."""
    if lead.id is None:
        raise ValueError("a lead is assigned once it is stored (it has no id yet)")
    sla = config.sla
    row = LeadAssignment(
        lead_id=lead.id,
        transition_id=transition_id,
        seq=seq,
        team=team.name if team else None,
        owner_id=choice.owner.id if choice.owner else None,
        reason=choice.reason[:500],
        assigned_at=now,
        sla_due_at=now + timedelta(hours=sla.hours) if sla and choice.owner else None,
    )
    session.add(row)
    session.flush()
    if choice.owner is not None:  # without one, an owner set elsewhere (a CRM, by hand) stays
        lead.owner = choice.owner.id
        session.add(lead)
    if choice.owner is not None and config.notify.enabled:
        queue_notification(session, row, kind="assigned", recipient=f"owner:{choice.owner.id}", now=now)
    return row


def queue_notification(
    session: Session, assignment: LeadAssignment, *, kind: str, recipient: str, now: datetime
) -> None:
    """One notification per (assignment, kind): a re-run or a second worker adds nothing."""
    values: dict[str, Any] = {
        "idempotency_key": f"notify:{kind}:{assignment.id}",
        "lead_id": assignment.lead_id,
        "assignment_id": assignment.id,
        "kind": kind,
        "recipient": recipient,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    session.execute(
        upsert_insert(session, NotificationOutbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), [values]
    )


def assign_new_sqls(*, session: Session, config: AssignmentConfig, now: datetime) -> AssignReport:
    """Give an owner to every SQL transition that has none yet and was never handed off; caller commits.

    Does nothing without teams in the config (handoffs then carry no owner). SQLs handed off
    before owners were configured keep their handoffs and get no owner (nor a notification).
    """
    report = AssignReport()
    if not config.teams:
        return report
    pending = session.execute(
        select(col(StageTransition.id), Lead)
        .join(Lead, col(Lead.id) == col(StageTransition.lead_id))
        .where(
            col(StageTransition.to_stage) == Stage.sql.value,
            ~exists().where(col(LeadAssignment.transition_id) == col(StageTransition.id)),
            ~exists().where(col(HandoffOutbox.transition_id) == col(StageTransition.id)),
        )
        .order_by(col(StageTransition.id))
    ).all()
    load = open_sqls(session)
    for transition_id, lead in pending:
        team = team_for(config, lead)
        lock_rotation(session, team.name if team else NO_TEAM)  # then look again: another worker may have
        if session.execute(select(exists().where(col(LeadAssignment.transition_id) == transition_id))).scalar():
            continue  # assigned it while we waited for the lock
        if team is None:
            record(session, config, lead=lead, transition_id=transition_id, seq=0, team=None,
                   choice=Choice(None, "no team's territory matches"), now=now)  # fmt: skip
            report.unassigned += 1
            continue
        choice = choose(session, config, team, load)
        if choice.owner is None and lead.stage == Stage.sql:
            report.waiting += 1
            continue
        if choice.owner is None:  # it left SQL while waiting: hand it off as it was, without an owner
            reason = f"{choice.reason}; no longer an SQL"
            record(session, config, lead=lead, transition_id=transition_id, seq=0, team=team,
                   choice=Choice(None, reason), now=now)  # fmt: skip
            report.unassigned += 1
            continue
        record(session, config, lead=lead, transition_id=transition_id, seq=0, team=team, choice=choice, now=now)
        if lead.stage == Stage.sql:
            load[choice.owner.id] += 1
        report.assigned[choice.owner.id] += 1
    return report


def assigned_transitions() -> Any:
    """A filter: SQL transitions that have an owner decision (queued for handoff only then)."""
    return exists().where(col(LeadAssignment.transition_id) == col(StageTransition.id))


def owner_payload(config: AssignmentConfig, owner_id: str | None) -> dict[str, Any] | None:
    """The `owner` part of the handoff payload; CRM sinks read owner.crm_ids[vendor] (None: not known)."""
    if owner_id is None:
        return None
    owner = config.owner(owner_id)
    known = owner.crm_ids if owner is not None else {}
    crm_ids = {vendor: known.get(vendor) for vendor in CRM_VENDORS}
    if owner is None:  # an owner set outside leadflow (or since removed from the config)
        return {"id": owner_id, "name": owner_id, "email": None, "crm_ids": crm_ids}
    return {"id": owner.id, "name": owner.name, "email": owner.email, "crm_ids": crm_ids}


def settle(session: Session, assignment_id: int | None, status: AssignmentStatus, now: datetime) -> bool:
    """Compare-and-set active → status; False if another worker (or run) settled it first."""
    result = session.exec(
        update(LeadAssignment)
        .where(col(LeadAssignment.id) == assignment_id, col(LeadAssignment.status) == AssignmentStatus.active.value)
        .values(status=status.value, resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)
