"""Writing a scored batch: the changed leads through a temporary table and one UPDATE ... FROM, the
stage transitions through one prepared insert, times in the driver's own form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, case, func, literal, update
from sqlalchemy.orm import Session

from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import Lead
from leadflow.leads.scoring.totals import EPOCH

_TRANSITION_COLUMNS = (
    "lead_id", "from_stage", "to_stage", "at", "fit_score", "engagement_score", "score", "ruleset_version", "reason",
    "run_id",
)  # fmt: skip


def insert_transitions(session: Session, rows: list[tuple[Any, ...]]) -> None:
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


def write_scores(session: Session, staged: list[tuple[Any, ...]], now: datetime) -> None:
    """Bulk update; `rescore_at` only if nobody (ingest) marked the lead due since we read it.

    `staged` rows are (lid, fit, eng, total, st, changed, r0, next), times already in the driver's form.
    """
    if not staged:
        return
    connection = session.connection()
    SCORES.create(connection, checkfirst=True)
    connection.execute(SCORES.delete())
    _stage_rows(connection, staged)
    lead, scores = table_of(Lead), SCORES
    unchanged_since_read = func.coalesce(lead.c.rescore_at, literal(EPOCH, DateTime)) == scores.c.r0
    connection.execute(
        update(lead)
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


def driver_time(session: Session) -> Any:
    """How a time goes to the driver: SQLAlchemy's text on SQLite, the datetime itself elsewhere."""
    return _sqlite_time if session.get_bind().dialect.name == "sqlite" else _same


def _same(value: Any) -> Any:
    return value
