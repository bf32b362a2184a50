"""Requalify leads: recompute score parts, move stages, record every move, schedule the next look.

Work comes in batches: a range of lead ids for a full recompute, or a list of ids for an
incremental run (leads never scored, leads whose activity or profile changed — ingest marks
them due —, and leads whose decayed score may cross a threshold by now). Each batch is one
GROUP BY over its activity and a few bulk statements; batches are independent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import Activity, Lead, Stage, StageTransition
from leadflow.leads.requalify.batch_write import driver_time, insert_transitions, write_scores
from leadflow.leads.requalify.lead_reads import (
    AFTER_RECYCLING,
    bulk_columns,
    driver_rows,
    lead_columns,
    lead_tuples,
    recycled_before,
)
from leadflow.leads.scoring.arrays import LeadColumns, score_batch
from leadflow.leads.scoring.rescore import next_rescore_at
from leadflow.leads.scoring.rules import Scorer
from leadflow.leads.scoring.stages import decide
from leadflow.leads.scoring.totals import EPOCH, NO_TIME, ActivityTotals, from_micros
from leadflow.leads.work.gc_pause import cycle_collector_paused

PG_WORK_MEM = "64MB"

_LEAD_ID: ColumnElement[int] = table_of(Lead).c.id  # typed: `Lead.id` is Optional until a row is stored


@dataclass
class BatchResult:
    leads: int = 0
    rescored: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)

    def merge(self, other: BatchResult) -> BatchResult:
        return BatchResult(self.leads + other.leads, self.rescored + other.rescored, self.moves + other.moves)


def make_scorer(session: Session, config: WorkspaceConfig) -> Scorer:
    return Scorer(
        config.scoring, config.stages, dialect=session.get_bind().dialect.name, disqualify=config.disqualify.when
    )


def plan_shards(session: Session, size: int) -> list[tuple[int, int]]:
    """Contiguous id ranges of at most `size` ids covering every lead (a full recompute)."""
    lo, hi = session.execute(select(func.min(col(Lead.id)), func.max(col(Lead.id)))).one()
    if lo is None:
        return []
    return [(start, min(start + size - 1, hi)) for start in range(lo, hi + 1, size)]


def due_lead_ids(session: Session, now: datetime) -> list[int]:
    """Leads an incremental run must look at: never scored, or due by `rescore_at`."""
    due = or_(col(Lead.scored_at).is_(None), col(Lead.rescore_at) <= now)
    return list(session.execute(select(_LEAD_ID).where(due).order_by(_LEAD_ID)).scalars())


@dataclass
class BatchPlan:
    """A scored batch before it is written: what changes, and the stage moves to record."""

    result: BatchResult
    staged: list[tuple[Any, ...]]
    transitions: list[tuple[Any, ...]]


def requalify_batch(*, session: Session, now: datetime, **selection: Any) -> BatchResult:
    """Rescore a batch and write it in the caller's transaction (the caller commits); `selection` takes
    `score_batch_plan`'s other arguments (config, lo/hi or ids, run_id, scorer, vectorised)."""
    plan = score_batch_plan(session=session, now=now, **selection)
    apply_plan(session, plan, now)
    return plan.result


def apply_plan(session: Session, plan: BatchPlan, now: datetime) -> None:
    """Write a scored batch (changed leads, then the transitions) in the caller's transaction."""
    write_scores(session, plan.staged, now)
    if plan.transitions:
        insert_transitions(session, plan.transitions)


def score_batch_plan(
    *,
    session: Session,
    config: WorkspaceConfig,
    now: datetime,
    lo: int | None = None,
    hi: int | None = None,
    ids: list[int] | None = None,
    run_id: str | None = None,
    scorer: Scorer | None = None,
    vectorised: bool = True,
) -> BatchPlan:
    """Score the leads with ids in [lo, hi] or in `ids` without writing anything (reads only).

    Every lead is scored on arrays (`leadflow.leads.scoring.arrays`); the leads that may move then go through
    `Scorer.parts` and `decide` one by one (all of them with `vectorised=False`, which the tests use
    to show both paths agree). Reading and writing apart let two processes score shards side by
    side on SQLite, whose read snapshot cannot turn into a write once another process has written.
    """
    scorer = scorer or make_scorer(session, config)
    if scorer.dialect == "postgresql":
        # For this transaction only: the batch's sort of its activity rows spills to disk with the
        # default 4 MB, and compiling the query with JIT costs more than it saves (BENCHMARKS.md, requalify).
        session.execute(text(f"SET LOCAL work_mem = '{PG_WORK_MEM}'"))
        session.execute(text("SET LOCAL jit = off"))
    if ids is not None:
        activity_filter, lead_filter = col(Activity.lead_id).in_(ids), col(Lead.id).in_(ids)
        among = col(StageTransition.lead_id).in_(ids)
    else:
        activity_filter, lead_filter = col(Activity.lead_id).between(lo, hi), col(Lead.id).between(lo, hi)
        among = col(StageTransition.lead_id).between(lo, hi)
    columns = bulk_columns(scorer)
    connection = session.connection()
    with cycle_collector_paused():
        rows = driver_rows(session, select(*columns).where(lead_filter).order_by(col(Lead.id)))
        totals = scorer.totals(connection, now, activity_filter)
        leads = LeadColumns.from_rows(rows, [c.key for c in columns])
        del rows
        scores = score_batch(scorer, config, leads, totals, now)
    recycled = recycled_before(session, among) | {int(i) for i in leads.ids[scores.recycled].tolist()}
    per_lead = scores.per_lead.copy() if vectorised else np.ones(len(leads.ids), dtype=bool)
    if recycled:
        per_lead |= np.isin(leads.ids, list(recycled))
    result = BatchResult(leads=len(leads.ids))
    staged: list[tuple[Any, ...]] = []
    transitions: list[tuple[Any, ...]] = []
    when = driver_time(session)
    version = config.scoring.version

    # Settled on arrays: forward moves by thresholds, or none; write only what changed.
    settled = ~per_lead
    changed = settled & np.any(leads.stored != np.column_stack([scores.fit, scores.engagement, scores.total]), axis=1)
    moved: dict[int, Stage] = {}
    moved_at = when(now)
    for i, to_stage, reason in scores.moves:
        if per_lead[i]:  # recycled before: the per-lead path decides
            continue
        moved[i] = to_stage
        from_stage = leads.stages[i]
        result.moves[(from_stage, to_stage.value)] += 1
        transitions.append(
            (int(leads.ids[i]), from_stage, to_stage.value, moved_at, float(scores.fit[i]),
             float(scores.engagement[i]), float(scores.total[i]), version, reason[:2000], run_id)
        )  # fmt: skip
    write = changed | (settled & ((scores.next_rescore != leads.rescore) | ~leads.scored))
    if moved:
        write[list(moved)] = True
    result.rescored += int(changed.sum()) + sum(1 for i in moved if not changed[i])
    for i in np.flatnonzero(write).tolist():
        after = scores.next_rescore[i]
        moved_to = moved.get(i)
        staged.append(
            (int(leads.ids[i]), float(scores.fit[i]), float(scores.engagement[i]), float(scores.total[i]),
             leads.stages[i] if moved_to is None else moved_to.value, None if moved_to is None else moved_at,
             leads.rescore_raw[i] or when(EPOCH), None if after == NO_TIME else when(from_micros(int(after))))
        )  # fmt: skip

    plan = BatchPlan(result, staged, transitions)
    picked = [int(i) for i in leads.ids[per_lead].tolist()]
    if picked:
        _score_one_by_one(session, scorer, config, now, picked, recycled, totals, plan, run_id=run_id)
    return plan


def _score_one_by_one(
    session: Session,
    scorer: Scorer,
    config: WorkspaceConfig,
    now: datetime,
    picked: list[int],
    recycled: set[int],
    totals: ActivityTotals,
    plan: BatchPlan,
    *,
    run_id: str | None,
) -> None:
    """The leads that may move, through `Scorer.parts` and `decide`, into `plan`; a lead ever recycled counts
    only its activity after its last recycling."""
    when = driver_time(session)
    moved_at, version = when(now), config.scoring.version
    full = lead_tuples(session, lead_columns(scorer, config), picked)
    recycled_ids = [i for i in picked if i in recycled]
    after_recycling = (
        scorer.totals(session.connection(), now, col(Activity.lead_id).in_(recycled_ids), AFTER_RECYCLING)
        if recycled_ids
        else None
    )
    for lead_id in picked:
        lead = full[lead_id]
        source = after_recycling if after_recycling is not None and lead_id in recycled else totals
        stage = Stage(lead.stage)
        parts = scorer.parts(lead, source.row(lead_id), now, detail=False)
        decision = decide(stage, lead.stage_changed_at, parts, config, lead)
        if decision:
            plan.result.moves[(stage.value, decision.to_stage.value)] += 1
            plan.transitions.append(
                (lead_id, stage.value, decision.to_stage.value, moved_at, parts.fit, parts.engagement,
                 parts.total, version, decision.reason[:2000], run_id)
            )  # fmt: skip
            stage = decision.to_stage
        scores_changed = (lead.fit_score, lead.engagement_score, lead.score) != (
            parts.fit,
            parts.engagement,
            parts.total,
        )
        if decision or scores_changed:
            plan.result.rescored += 1
        after = next_rescore_at(parts=parts, stage=stage, config=config, now=now)
        # A lead whose row would not change is not written: a full recompute in a steady state is reads only.
        if decision or scores_changed or after != lead.rescore_at or lead.scored_at is None:
            plan.staged.append(
                (lead_id, parts.fit, parts.engagement, parts.total, stage.value,
                 when(now if decision else None), when(lead.rescore_at or EPOCH), when(after))
            )  # fmt: skip


def requalify_shard(
    *, session: Session, config: WorkspaceConfig, lo: int, hi: int, now: datetime, run_id: str | None = None
) -> BatchResult:
    """A full recompute of the leads with ids in [lo, hi]."""
    return requalify_batch(session=session, config=config, now=now, lo=lo, hi=hi, run_id=run_id)
