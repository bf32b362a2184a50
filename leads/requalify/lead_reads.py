"""What requalify reads of a batch of leads: the columns, straight from the driver, and which leads were
ever recycled (a recycled lead counts only its activity since)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import Activity, Lead, Stage, StageTransition
from leadflow.leads.scoring.rules import Scorer
from leadflow.leads.scoring.stages import BANT_FIELDS

_LEAD = table_of(Lead)
LEAD_COLUMNS = tuple(
    _LEAD.c[name]
    for name in (
        "id email title industry company_size country company budget authority need timing"
        " stage stage_changed_at fit_score engagement_score score created_at last_activity_at rescore_at"
    ).split()
)
# What requalify itself reads of every lead, besides the fields its rules read.
_SCORING_COLUMNS = tuple(
    _LEAD.c[name]
    for name in (
        "id stage stage_changed_at fit_score engagement_score score created_at last_activity_at rescore_at scored_at"
    ).split()
)


# Once recycled, a lead counts only activity after its last recycling (or, recycled by hand, after
# its last stage change): in every stage since, so a rejected request cannot send it back to sales.
_LAST_RECYCLED = (
    select(func.max(col(StageTransition.at)))
    .where(col(StageTransition.lead_id) == col(Activity.lead_id), col(StageTransition.to_stage) == Stage.recycled.value)
    .scalar_subquery()
)
_STAGE_SINCE = (
    select(func.coalesce(col(Lead.stage_changed_at), col(Lead.created_at)))
    .where(col(Lead.id) == col(Activity.lead_id))
    .scalar_subquery()
)
AFTER_RECYCLING = col(Activity.occurred_at) > func.coalesce(_LAST_RECYCLED, _STAGE_SINCE)


def lead_columns(scorer: Scorer, config: WorkspaceConfig) -> list[Any]:
    """Only the columns the rules read: the lead table is wide, and every column read costs at a million leads."""
    names = set(scorer.lead_fields)
    if any(rule.bant or rule.min_bant_known for _, rule in config.stages.ordered()):
        names.update(BANT_FIELDS)
    return [*_SCORING_COLUMNS, *(_LEAD.c[name] for name in sorted(names))]


def driver_rows(session: Session, query: Any) -> Sequence[Any]:
    """The driver's own tuples: SQLAlchemy's rows cost more than the query's aggregation at a million leads.

    Callers take care of types (see `LeadColumns`, `lead_tuples`): text times on SQLite.
    """
    cursor = session.connection().execute(query).cursor
    if cursor is None:
        raise RuntimeError("a SELECT without a cursor")
    return cursor.fetchall()


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def bulk_columns(scorer: Scorer) -> list[Any]:
    """What the array path reads of every lead of a batch: scores, stage, times, and the fields the rules read.

    `since` is where inactivity counts from when the lead has no activity rows (its activity rows
    say otherwise); `scored` whether it was ever scored.
    """
    return [
        col(Lead.id), col(Lead.stage), col(Lead.fit_score), col(Lead.engagement_score), col(Lead.score),
        _raw_time(func.coalesce(col(Lead.last_activity_at), col(Lead.created_at))).label("since"), col(Lead.rescore_at),
        col(Lead.scored_at).is_not(None).label("scored"), *(_LEAD.c[name] for name in scorer.lead_fields),
    ]  # fmt: skip


def _raw_time(column: Any) -> Any:
    """A time as the driver gives it (SQLite text, PostgreSQL datetime), without SQLAlchemy's processing."""
    return type_coerce(column, String)


def lead_tuples(session: Session, columns: list[Any], ids: list[int]) -> dict[int, Any]:
    """Named tuples with datetimes (parsed here from SQLite's text) of the leads `ids`, for the per-lead path."""
    names = tuple(c.key for c in columns)
    row_type = _ROW_TYPES.get(names) or _ROW_TYPES.setdefault(names, namedtuple("LeadRow", names))
    sqlite = session.get_bind().dialect.name == "sqlite"
    times = [i for i, c in enumerate(columns) if isinstance(c.type, DateTime)] if sqlite else []
    parse = datetime.fromisoformat
    out: dict[int, Any] = {}
    for start in range(0, len(ids), 5000):
        for values in driver_rows(session, select(*columns).where(col(Lead.id).in_(ids[start : start + 5000]))):
            if times:
                values = list(values)
                for i in times:
                    if values[i] is not None:
                        values[i] = parse(values[i])
            out[values[0]] = row_type._make(values)
    return out


def recycled_before(session: Session, among: ColumnElement[bool]) -> set[int]:
    """The ids of the leads ever moved to recycled; `among` narrows the transitions to look at."""
    query = select(col(StageTransition.lead_id)).where(col(StageTransition.to_stage) == Stage.recycled.value, among)
    return set(session.execute(query.distinct()).scalars())


def ever_recycled(session: Session, leads: Sequence[Any], among: ColumnElement[bool]) -> list[int]:
    """The ids of `leads` that are or ever were recycled; `among` narrows the transitions to look at."""
    once = recycled_before(session, among)
    return [lead.id for lead in leads if lead.stage == Stage.recycled or lead.id in once]
