"""Requalify a shard of leads: recompute score parts, move stages, record every move.

A shard is a range of lead ids, so a run over a million leads is tens of shards, each one
GROUP BY over its activity and a few bulk statements; shards are independent and can run on
different workers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import DateTime, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from leads.config import WorkspaceConfig
from leads.models import Lead, Stage, StageTransition
from leads.scoring import Scorer
from leads.stages import decide

LEAD_COLUMNS = (
    Lead.id,
    Lead.email,
    Lead.title,
    Lead.industry,
    Lead.company_size,
    Lead.country,
    Lead.company,
    Lead.stage,
    Lead.fit_score,
    Lead.engagement_score,
    Lead.score,
)


@dataclass
class ShardResult:
    leads: int = 0
    rescored: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)

    def merge(self, other: ShardResult) -> ShardResult:
        return ShardResult(self.leads + other.leads, self.rescored + other.rescored, self.moves + other.moves)


def plan_shards(session: Session, size: int) -> list[tuple[int, int]]:
    """Contiguous id ranges of at most `size` ids covering every lead."""
    lo, hi = session.execute(select(func.min(Lead.id), func.max(Lead.id))).one()
    if lo is None:
        return []
    return [(start, min(start + size - 1, hi)) for start in range(lo, hi + 1, size)]


def requalify_shard(
    *, session: Session, config: WorkspaceConfig, lo: int, hi: int, now: datetime, run_id: str | None = None
) -> ShardResult:
    """Rescore leads with ids in [lo, hi] and record stage moves; the caller commits."""
    scorer = Scorer(config.scoring, config.stages)
    counts = {row[0]: tuple(row[1:]) for row in session.execute(scorer.counts_query(lo, hi))}
    leads = session.execute(select(*LEAD_COLUMNS).where(Lead.id.between(lo, hi))).all()
    result = ShardResult(leads=len(leads))
    updates: list[dict[str, object]] = []
    transitions: list[dict[str, object]] = []
    for lead in leads:
        parts = scorer.parts(lead, counts.get(lead.id))  # type: ignore[arg-type]
        decision = decide(Stage(lead.stage), parts, config.stages)
        unchanged = (lead.fit_score, lead.engagement_score, lead.score) == (parts.fit, parts.engagement, parts.total)
        if unchanged and decision is None:
            continue
        stage = decision.to_stage if decision else Stage(lead.stage)
        updates.append(
            {
                "lid": lead.id,
                "fit": parts.fit,
                "eng": parts.engagement,
                "total": parts.total,
                "st": stage.value,
                "changed": now if decision else None,
            }
        )
        if decision:
            result.moves[(Stage(lead.stage).value, stage.value)] += 1
            transitions.append(
                {
                    "lead_id": lead.id,
                    "from_stage": Stage(lead.stage),
                    "to_stage": stage,
                    "at": now,
                    "fit_score": parts.fit,
                    "engagement_score": parts.engagement,
                    "score": parts.total,
                    "ruleset_version": config.scoring.version,
                    "reason": decision.reason[:2000],
                    "run_id": run_id,
                }
            )
    result.rescored = len(updates)
    if updates:
        table = Lead.__table__
        session.connection().execute(
            update(table)  # type: ignore[arg-type]
            .where(table.c.id == bindparam("lid"))
            .values(
                fit_score=bindparam("fit"),
                engagement_score=bindparam("eng"),
                score=bindparam("total"),
                stage=bindparam("st"),
                stage_changed_at=func.coalesce(bindparam("changed", type_=DateTime), table.c.stage_changed_at),
                updated_at=now,
            ),
            updates,
        )
    if transitions:
        session.execute(insert(StageTransition), transitions)
    return result
