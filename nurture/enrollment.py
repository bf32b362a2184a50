"""Who is in which sequence: enroll leads that fit, move them by priority, exit those who are done.

Every decision is a set-based statement per sequence (a million enrolled leads cost a few
queries, not a million round trips): the criteria become SQL conditions on `lead`, exits are
UPDATEs with correlated EXISTS over `activity`. Due steps are queued in nurture/steps.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.nurture import FitCriterion, Sequence
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import (
    FUNNEL,
    Activity,
    ActivityType,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    Stage,
    funnel_rank,
)
from leadflow.leads.db.sql import rowcount
from leadflow.nurture.steps import first_due
from leadflow.nurture.suppression import suppressed

E = NurtureEnrollment
# The activity that ends an enrollment for each optional exit (only if it happened after enrolling).
EXIT_ACTIVITY = {
    "replied": (ActivityType.email_reply.value,),
    "sales_took_over": (ActivityType.sales_accepted.value,),
}


def enroll(*, session: Session, config: WorkspaceConfig, now: datetime) -> Counter[str]:
    """Enroll eligible leads, highest priority first; returns how many joined each sequence (none: left out).

    With `max_active_per_lead: 1` (the default) a lead active in a lower-priority sequence that
    fits a higher one moves: the old enrollment exits with reason "moved to NAME".
    """
    enrolled: Counter[str] = Counter()
    limit = config.nurture.max_active_per_lead
    for sequence in config.nurture.by_priority():
        fits = eligible(sequence, now)
        lower = [s.name for s in config.nurture.sequences if s.priority < sequence.priority]
        if limit == 1 and lower:
            _exit_where(
                session,
                now,
                f"moved to {sequence.name}",
                [col(E.sequence).in_(lower), col(E.lead_id).in_(select(col(Lead.id)).where(*fits))],
            )
        if limit == 1:
            room = ~exists().where(col(E.lead_id) == col(Lead.id), col(E.status) == EnrollmentStatus.active)
        else:  # the re-enrollment check already keeps a lead out of a sequence it is active in
            active = select(func.count()).where(
                col(E.lead_id) == col(Lead.id), col(E.status) == EnrollmentStatus.active
            )
            room = active.scalar_subquery() < limit
        earlier = select(func.coalesce(func.max(E.cycle), 0) + 1).where(
            col(E.lead_id) == col(Lead.id), col(E.sequence) == sequence.name
        )
        chosen = select(
            col(Lead.id),
            literal(sequence.name),
            earlier.scalar_subquery(),
            literal(0),
            literal(EnrollmentStatus.active.value),
            literal(first_due(sequence, now)),
            literal(now),
            literal(now),
        ).where(*fits, room)
        result = session.execute(
            insert(E)
            .from_select(
                ["lead_id", "sequence", "cycle", "step", "status", "next_due_at", "waiting_since", "enrolled_at"],
                chosen,
            )
            # SQLAlchemy keeps an INSERT's rowcount only when asked; psycopg otherwise reports -1.
            .execution_options(preserve_rowcount=True)
        )
        enrolled[sequence.name] += rowcount(result)
    return +enrolled  # sequences nobody joined are left out, as exit_finished leaves out reasons


def eligible(sequence: Sequence, now: datetime) -> list[ColumnElement[bool]]:
    """SQL conditions on `lead` for joining `sequence` now (not counting other active sequences)."""
    rule = sequence.enroll
    conditions: list[ColumnElement[bool]] = [
        col(Lead.stage).in_([s.value for s in rule.stages]),
        col(Lead.unsubscribed_at).is_(None),
        col(Lead.bounced_at).is_(None),
        ~suppressed(col(Lead.email), sequence.name),
        _may_enter_again(sequence, now),
    ]
    if rule.min_score is not None:
        conditions.append(col(Lead.score) >= rule.min_score)
    if rule.max_score is not None:
        conditions.append(col(Lead.score) <= rule.max_score)
    if rule.inactive_days is not None:
        quiet_since = now - timedelta(days=rule.inactive_days)
        last_activity = col(Lead.last_activity_at)
        conditions.append(or_(last_activity.is_(None), last_activity <= quiet_since))
    for name, criterion in rule.fit.items():
        conditions.append(_fit(col(getattr(Lead, name)), criterion))
    return conditions


def _fit(column: SQLColumnExpression[Any], criterion: FitCriterion) -> ColumnElement[bool]:
    if criterion.one_of is not None:
        return func.lower(column).in_([v.lower() for v in criterion.one_of])
    if criterion.contains is not None:
        return func.lower(column).contains(criterion.contains.lower(), autoescape=True)
    bounds = []
    if criterion.at_least is not None:
        bounds.append(column >= criterion.at_least)
    if criterion.at_most is not None:
        bounds.append(column <= criterion.at_most)
    return and_(*bounds)


def _may_enter_again(sequence: Sequence, now: datetime) -> ColumnElement[bool]:
    """The re-enrollment policy: never (the default), or `after_days` after the last time ended."""
    mine = [col(E.lead_id) == col(Lead.id), col(E.sequence) == sequence.name]
    policy = sequence.reenroll
    if policy is None:
        return ~exists().where(*mine)
    cooling = now - timedelta(days=policy.after_days)
    blocked = ~exists().where(*mine, or_(col(E.status) == EnrollmentStatus.active, col(E.exited_at) > cooling))
    if policy.max_times is None:
        return blocked
    times = select(func.count()).where(*mine).scalar_subquery()
    return and_(blocked, times < policy.max_times)


def exit_finished(*, session: Session, config: WorkspaceConfig, now: datetime) -> Counter[str]:
    """End active enrollments of leads that opted out, were disqualified, reached the goal or engaged enough.

    Reasons, in the order they are checked (the first that applies is recorded): unsubscribed,
    bounced, disqualified, reached STAGE, replied, sales took over.
    """
    exited: Counter[str] = Counter()
    opted_out = {
        "unsubscribed": col(Lead.unsubscribed_at).is_not(None),
        "bounced": col(Lead.bounced_at).is_not(None),
        "disqualified": col(Lead.stage) == Stage.disqualified.value,
    }
    for reason, condition in opted_out.items():
        exited[reason] += _exit_where(session, now, reason, [col(E.lead_id).in_(select(col(Lead.id)).where(condition))])
    for sequence in config.nurture.sequences:
        goal = [s.value for s in FUNNEL if funnel_rank(s) >= funnel_rank(sequence.exit_at_stage)]
        reason = f"reached {sequence.exit_at_stage.value}"
        exited[reason] += _exit_where(
            session,
            now,
            reason,
            [
                col(E.sequence) == sequence.name,
                col(E.lead_id).in_(select(col(Lead.id)).where(col(Lead.stage).in_(goal))),
            ],
        )
        for name in sequence.exit_on:
            happened = exists().where(
                col(Activity.lead_id) == col(E.lead_id),
                col(Activity.type).in_(EXIT_ACTIVITY[name]),
                col(Activity.occurred_at) >= col(E.enrolled_at),
                col(Activity.occurred_at) <= now,
            )
            reason = name.replace("_", " ")
            exited[reason] += _exit_where(session, now, reason, [col(E.sequence) == sequence.name, happened])
    return +exited


def _exit_where(session: Session, now: datetime, reason: str, where: list[ColumnElement[bool]]) -> int:
    result = session.execute(
        update(E)
        .where(col(E.status) == EnrollmentStatus.active, *where)
        .values(status=EnrollmentStatus.exited.value, exited_at=now, exit_reason=reason, next_due_at=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)
