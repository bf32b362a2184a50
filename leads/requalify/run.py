"""Requalify leads: recompute score parts, move stages, record every move, schedule the next look.

Work comes in batches: a range of lead ids for a full recompute, or a list of ids for an
incremental run (leads never scored, leads whose activity or profile changed — ingest marks
them due —, and leads whose decayed score may cross a threshold by now). Each batch is one
GROUP BY over its activity and a few bulk statements; batches are independent.
"""

from __future__ import annotations

import hashlib
from collections import Counter, namedtuple
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    func,
    literal,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Activity, Lead, Stage, StageTransition
from leadflow.leads.ingest.store import load_cursor, save_cursor
from leadflow.leads.scoring.arrays import LeadColumns, score_batch
from leadflow.leads.scoring.rescore import next_rescore_at
from leadflow.leads.scoring.rules import Scorer
from leadflow.leads.scoring.stages import BANT_FIELDS, decide
from leadflow.leads.scoring.totals import EPOCH, NO_TIME, ActivityTotals, from_micros
from leadflow.leads.work.gc_pause import cycle_collector_paused

LEAD_COLUMNS = (
    Lead.id, Lead.email, Lead.title, Lead.industry, Lead.company_size, Lead.country, Lead.company,
    Lead.budget, Lead.authority, Lead.need, Lead.timing,
    Lead.stage, Lead.stage_changed_at, Lead.fit_score, Lead.engagement_score, Lead.score,
    Lead.created_at, Lead.last_activity_at, Lead.rescore_at,
)  # fmt: skip
# What requalify itself reads of every lead, besides the fields its rules read.
_SCORING_COLUMNS = (
    Lead.id, Lead.stage, Lead.stage_changed_at, Lead.fit_score, Lead.engagement_score, Lead.score,
    Lead.created_at, Lead.last_activity_at, Lead.rescore_at, Lead.scored_at,
)  # fmt: skip
STATE_SOURCE, STATE_STREAM = "requalify", "state"
PG_WORK_MEM = "64MB"


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
    lo, hi = session.execute(select(func.min(Lead.id), func.max(Lead.id))).one()
    if lo is None:
        return []
    return [(start, min(start + size - 1, hi)) for start in range(lo, hi + 1, size)]


def due_lead_ids(session: Session, now: datetime) -> list[int]:
    """Leads an incremental run must look at: never scored, or due by `rescore_at`."""
    due = or_(Lead.scored_at.is_(None), Lead.rescore_at <= now)
    return list(session.execute(select(Lead.id).where(due).order_by(Lead.id)).scalars())


def needs_full_recompute(session: Session, config: WorkspaceConfig) -> bool:
    """A changed rule set invalidates every stored score and every scheduled rescore."""
    state = load_cursor(session, source=STATE_SOURCE, stream=STATE_STREAM) or {}
    return state.get("ruleset") != _ruleset_fingerprint(config)


def remember_ruleset(session: Session, config: WorkspaceConfig, now: datetime) -> None:
    save_cursor(
        session,
        source=STATE_SOURCE,
        stream=STATE_STREAM,
        value={"ruleset": _ruleset_fingerprint(config), "full_at": now.isoformat()},
    )


def _ruleset_fingerprint(config: WorkspaceConfig) -> str:
    """The version marketers bump, plus the rules themselves, so an edit without a bump still counts."""
    rules = config.model_dump_json(include={"scoring", "stages", "recycle", "disqualify"})
    return f"{config.scoring.version}:{hashlib.sha256(rules.encode()).hexdigest()[:12]}"


# Once recycled, a lead counts only activity after its last recycling (or, recycled by hand, after
# its last stage change): in every stage since, so a rejected request cannot send it back to sales.
_LAST_RECYCLED = (
    select(func.max(StageTransition.at))
    .where(StageTransition.lead_id == Activity.lead_id, StageTransition.to_stage == Stage.recycled.value)
    .scalar_subquery()
)
_STAGE_SINCE = (
    select(func.coalesce(Lead.stage_changed_at, Lead.created_at)).where(Lead.id == Activity.lead_id).scalar_subquery()
)
AFTER_RECYCLING = Activity.occurred_at > func.coalesce(_LAST_RECYCLED, _STAGE_SINCE)


def _lead_columns(scorer: Scorer, config: WorkspaceConfig) -> list[Any]:
    """Only the columns the rules read: the lead table is wide, and every column read costs at a million leads."""
    names = set(scorer.lead_fields)
    if any(rule.bant or rule.min_bant_known for _, rule in config.stages.ordered()):
        names.update(BANT_FIELDS)
    return [*_SCORING_COLUMNS, *(Lead.__table__.c[name] for name in sorted(names))]


def _driver_rows(session: Session, query: Any) -> list[tuple[Any, ...]]:
    """The driver's own tuples: SQLAlchemy's rows cost more than the query's aggregation at a million leads.

    Callers take care of types (see `LeadColumns`, `_lead_tuples`): text times on SQLite.
    """
    return session.connection().execute(query).cursor.fetchall()  # type: ignore[union-attr]


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _bulk_columns(scorer: Scorer) -> list[Any]:
    """What the array path reads of every lead of a batch: scores, stage, times, and the fields the rules read.

    `since` is where inactivity counts from when the lead has no activity rows (its activity rows
    say otherwise); `scored` whether it was ever scored.
    """
    return [
        Lead.id, Lead.stage, Lead.fit_score, Lead.engagement_score, Lead.score,
        _raw_time(func.coalesce(Lead.last_activity_at, Lead.created_at)).label("since"), Lead.rescore_at,
        Lead.scored_at.is_not(None).label("scored"), *(Lead.__table__.c[name] for name in scorer.lead_fields),
    ]  # fmt: skip


def _raw_time(column: Any) -> Any:
    """A time as the driver gives it (SQLite text, PostgreSQL datetime), without SQLAlchemy's processing."""
    return type_coerce(column, String)


def _lead_tuples(session: Session, columns: list[Any], ids: list[int]) -> dict[int, Any]:
    """Named tuples with datetimes (parsed here from SQLite's text) of the leads `ids`, for the per-lead path."""
    names = tuple(c.key for c in columns)
    row_type = _ROW_TYPES.get(names) or _ROW_TYPES.setdefault(names, namedtuple("LeadRow", names))  # type: ignore[misc]
    sqlite = session.get_bind().dialect.name == "sqlite"
    times = [i for i, c in enumerate(columns) if isinstance(c.type, DateTime)] if sqlite else []
    parse = datetime.fromisoformat
    out: dict[int, Any] = {}
    for start in range(0, len(ids), 5000):
        for values in _driver_rows(session, select(*columns).where(Lead.id.in_(ids[start : start + 5000]))):
            if times:
                values = list(values)
                for i in times:
                    if values[i] is not None:
                        values[i] = parse(values[i])
            out[values[0]] = row_type._make(values)
    return out


def recycled_before(session: Session, among: ColumnElement[bool]) -> set[int]:
    """The ids of the leads ever moved to recycled; `among` narrows the transitions to look at."""
    query = select(StageTransition.lead_id).where(StageTransition.to_stage == Stage.recycled.value, among)
    return set(session.execute(query.distinct()).scalars())


def ever_recycled(session: Session, leads: Sequence[Any], among: ColumnElement[bool]) -> list[int]:
    """The ids of `leads` that are or ever were recycled; `among` narrows the transitions to look at."""
    once = recycled_before(session, among)
    return [lead.id for lead in leads if lead.stage == Stage.recycled or lead.id in once]


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
    _write(session, plan.staged, now)
    if plan.transitions:
        _insert_transitions(session, plan.transitions)


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
        # default 4 MB, and compiling the query with JIT costs more (about 40 ms) than it saves.
        session.execute(text(f"SET LOCAL work_mem = '{PG_WORK_MEM}'"))
        session.execute(text("SET LOCAL jit = off"))
    if ids is not None:
        activity_filter, lead_filter = Activity.lead_id.in_(ids), Lead.id.in_(ids)
        among = StageTransition.lead_id.in_(ids)
    else:
        activity_filter, lead_filter = Activity.lead_id.between(lo, hi), Lead.id.between(lo, hi)
        among = StageTransition.lead_id.between(lo, hi)
    columns = _bulk_columns(scorer)
    connection = session.connection()
    with cycle_collector_paused():
        rows = _driver_rows(session, select(*columns).where(lead_filter).order_by(Lead.id))
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
    when = _driver_time(session)
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
        to_stage = moved.get(i)
        staged.append(
            (int(leads.ids[i]), float(scores.fit[i]), float(scores.engagement[i]), float(scores.total[i]),
             leads.stages[i] if to_stage is None else to_stage.value, None if to_stage is None else moved_at,
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
    when = _driver_time(session)
    moved_at, version = when(now), config.scoring.version
    full = _lead_tuples(session, _lead_columns(scorer, config), picked)
    recycled_ids = [i for i in picked if i in recycled]
    after_recycling = (
        scorer.totals(session.connection(), now, Activity.lead_id.in_(recycled_ids), AFTER_RECYCLING)
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


_TRANSITION_COLUMNS = (
    "lead_id", "from_stage", "to_stage", "at", "fit_score", "engagement_score", "score", "ruleset_version", "reason",
    "run_id",
)  # fmt: skip


def _insert_transitions(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """One prepared insert through the driver (a first full run moves most leads: hundreds of thousands of rows)."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO stage_transition ({', '.join(_TRANSITION_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_TRANSITION_COLUMNS))})",
        rows,
    )


# Scores of one batch land in a temporary table first, then one UPDATE ... FROM joins them in:
# several times faster than an UPDATE per lead once a batch has thousands of leads.
_staging = MetaData()
SCORES = Table(
    "requalify_scores",
    _staging,
    Column("lid", Integer, primary_key=True),
    Column("fit", Float),
    Column("eng", Float),
    Column("total", Float),
    Column("st", String(20)),
    Column("changed", DateTime),
    Column("r0", DateTime),
    Column("next", DateTime),
    prefixes=["TEMPORARY"],
)


def _write(session: Session, staged: list[tuple[Any, ...]], now: datetime) -> None:
    """Bulk update; `rescore_at` only if nobody (ingest) marked the lead due since we read it.

    `staged` rows are (lid, fit, eng, total, st, changed, r0, next), times already in the driver's form.
    """
    if not staged:
        return
    connection = session.connection()
    SCORES.create(connection, checkfirst=True)
    connection.execute(SCORES.delete())
    _stage_rows(connection, staged)
    lead, scores = Lead.__table__, SCORES
    unchanged_since_read = func.coalesce(lead.c.rescore_at, literal(EPOCH, DateTime)) == scores.c.r0
    connection.execute(
        update(lead)  # type: ignore[arg-type]
        .where(lead.c.id == scores.c.lid)
        .values(
            fit_score=scores.c.fit,
            engagement_score=scores.c.eng,
            score=scores.c.total,
            stage=scores.c.st,
            stage_changed_at=func.coalesce(scores.c.changed, lead.c.stage_changed_at),
            scored_at=now,
            rescore_at=case((unchanged_since_read, scores.c.next), else_=lead.c.rescore_at),
        )
    )
    connection.execute(SCORES.delete())


def _stage_rows(connection: Any, staged: list[tuple[Any, ...]]) -> None:
    """Straight to the driver: SQLAlchemy's per-value processing costs more than the insert itself."""
    marks = ", ".join(["?" if connection.dialect.name == "sqlite" else "%s"] * 8)
    connection.exec_driver_sql(
        f"INSERT INTO requalify_scores (lid, fit, eng, total, st, changed, r0, next) VALUES ({marks})", staged
    )


def _sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy stores for a DateTime on SQLite (always with microseconds)."""
    return None if value is None else value.isoformat(" ", "microseconds")


def _driver_time(session: Session) -> Any:
    """How a time goes to the driver: SQLAlchemy's text on SQLite, the datetime itself elsewhere."""
    return _sqlite_time if session.get_bind().dialect.name == "sqlite" else _same


def _same(value: Any) -> Any:
    return value


def requalify_shard(
    *, session: Session, config: WorkspaceConfig, lo: int, hi: int, now: datetime, run_id: str | None = None
) -> BatchResult:
    """A full recompute of the leads with ids in [lo, hi]."""
    return requalify_batch(session=session, config=config, now=now, lo=lo, hi=hi, run_id=run_id)
