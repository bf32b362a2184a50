"""Known sales outcomes (won, lost, still open) that backtests hold the rules against.

Outcomes come from a CSV file (`email,outcome,decided_at`, as the demo writes it) or from the CRM's
deal_won / deal_lost activity. They are labels, never inputs: scoring must not see them, so they
are read here and only here. A bad file row is skipped and reported with its file:line, the way
ingest quarantines bad activity, so one typo does not void a whole history.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.db.models import Activity, ActivityType, Lead
from leadflow.leads.ingest.records import RecordError, normalise_email, parse_timestamp
from leadflow.leads.scoring.rules import _as_datetime

REQUIRED_COLUMNS = ("email", "outcome")


class OutcomeKind(StrEnum):
    won = "won"
    lost = "lost"
    open = "open"


DECIDED = frozenset({OutcomeKind.won, OutcomeKind.lost})


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    decided_at: datetime | None = None


@dataclass
class Outcomes:
    """Outcomes by normalised email, where they came from, and the rows that could not be used."""

    by_email: dict[str, Outcome]
    source: str
    problems: list[str] = field(default_factory=list)

    def count(self, kind: OutcomeKind) -> int:
        return sum(1 for o in self.by_email.values() if o.kind is kind)


class OutcomesError(Exception):
    """The file as a whole cannot be read (missing, or without the email and outcome columns)."""


def load_outcomes(path: Path) -> Outcomes:
    """Read an outcomes CSV; a later row for the same email replaces an earlier one."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise OutcomesError(f"{path}: file not found") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise OutcomesError(f"{path}:1: the header needs the columns email,outcome[,decided_at]; missing {missing}")
        reader.fieldnames = header
        outcomes = Outcomes(by_email={}, source=str(path))
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                email, outcome = _parse_row(row)
            except ValueError as exc:
                outcomes.problems.append(f"{where}: {exc}")
                continue
            outcomes.by_email[email] = outcome
    return outcomes


def _parse_row(row: dict[str, str | None]) -> tuple[str, Outcome]:
    if None in row:
        raise ValueError("more columns than the header")
    raw_email = row.get("email") or ""
    email = normalise_email(raw_email)
    if email is None:
        raise ValueError(f"not an email address: {raw_email.strip()!r}")
    raw_kind = (row.get("outcome") or "").strip().lower()
    try:
        kind = OutcomeKind(raw_kind)
    except ValueError:
        raise ValueError(f"outcome must be won, lost or open, got {raw_kind!r}") from None
    raw_at = (row.get("decided_at") or "").strip()
    try:
        decided_at = parse_timestamp(raw_at) if raw_at else None
    except RecordError:
        raise ValueError(f"decided_at is not an ISO 8601 date or time: {raw_at!r}") from None
    return email, Outcome(kind, decided_at)


def outcomes_from_crm(session: Session) -> Outcomes:
    """Each lead's latest deal_won or deal_lost activity (one GROUP BY); leads without one are open."""
    won_at = func.max(case((col(Activity.type) == ActivityType.deal_won.value, col(Activity.occurred_at)), else_=None))
    lost_at = func.max(
        case((col(Activity.type) == ActivityType.deal_lost.value, col(Activity.occurred_at)), else_=None)
    )
    query = (
        select(col(Lead.email), won_at, lost_at)
        .join(Lead, col(Lead.id) == col(Activity.lead_id))
        .where(col(Activity.type).in_([ActivityType.deal_won.value, ActivityType.deal_lost.value]))
        .group_by(col(Lead.email))
    )
    by_email: dict[str, Outcome] = {}
    for email, won, lost in session.execute(query):
        won, lost = (_as_datetime(v) if v is not None else None for v in (won, lost))
        if won is not None and (lost is None or won >= lost):
            by_email[email] = Outcome(OutcomeKind.won, won)
        else:
            by_email[email] = Outcome(OutcomeKind.lost, lost)
    return Outcomes(by_email=by_email, source="CRM (deal_won / deal_lost activity)")


def lead_labels(session: Session, outcomes: Outcomes) -> dict[int, OutcomeKind]:
    """Outcomes by lead id, for the emails that match a lead."""
    ids = {email: lead_id for email, lead_id in session.execute(select(col(Lead.email), col(Lead.id)))}
    return {ids[email]: o.kind for email, o in outcomes.by_email.items() if email in ids}
