"""The stage changes one requalify run made (its transitions carry the run's id), for its events."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from leadflow.leads.db.models import Lead, StageTransition


@dataclass(frozen=True)
class Move:
    """One lead's stage change, as its event tells it."""

    lead_id: int
    email: str
    from_stage: str
    to_stage: str
    fit_score: float
    engagement_score: float
    score: float
    reason: str
    ruleset_version: str


def stage_changes(session: Session, run_id: str) -> dict[str, int]:
    """Leads the run moved, per stage they moved to."""
    rows = session.exec(
        select(col(StageTransition.to_stage), func.count())
        .where(col(StageTransition.run_id) == run_id)
        .group_by(col(StageTransition.to_stage))
    ).all()
    return {str(stage): count for stage, count in rows}


def first_moves_to(session: Session, run_id: str, stages: Collection[str], limit: int) -> list[Move]:
    """The run's first `limit` transitions into `stages`, each with its lead's email."""
    rows = session.exec(
        select(StageTransition, col(Lead.email))
        .join(Lead, col(Lead.id) == col(StageTransition.lead_id))
        .where(col(StageTransition.run_id) == run_id, col(StageTransition.to_stage).in_(stages))
        .order_by(col(StageTransition.id))
        .limit(limit)
    ).all()
    return [
        Move(
            lead_id=t.lead_id,
            email=email,
            from_stage=t.from_stage,
            to_stage=t.to_stage,
            fit_score=t.fit_score,
            engagement_score=t.engagement_score,
            score=t.score,
            reason=t.reason,
            ruleset_version=t.ruleset_version,
        )
        for t, email in rows
    ]
