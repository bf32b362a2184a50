"""Shared helpers for the scoring and qualification tests: a rule set, storing activity the way ingest
does, running requalify (full or incremental), and reading back leads and their stage moves."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import Engine, select, update

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Lead, Stage, StageTransition, utcnow
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.records import parse_profile
from leadflow.leads.ingest.store import store_batch
from leadflow.leads.requalify.run import BatchResult, due_lead_ids, plan_shards, requalify_batch, requalify_shard

NOW = datetime(2026, 10, 1, 12, 0)
# A run time after the real clock: ingest stamps its "due" marks (rescore_at) with the real time, so an
# incremental run only sees them when it runs later than that, as it does in production.
RUN_AT = (utcnow() + timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
_ids = count(1)

Event = tuple[str, str | None] | tuple[str, str | None, datetime]


def make_config(
    *,
    stages: dict[str, Any] | None = None,
    recycle: dict[str, Any] | None = None,
    disqualify: dict[str, Any] | None = None,
    **scoring_overrides: Any,
) -> WorkspaceConfig:
    """The test rule set; keyword arguments replace scoring keys, `stages` replaces single stage rules."""
    scoring: dict[str, Any] = {
        "version": "rules-7",
        "fit": [
            {"name": "Decision maker", "field": "title", "pattern": r"(?i)\b(ceo|cto|director)\b", "points": 20},
            {"name": "Student", "field": "title", "pattern": r"(?i)\bstudent\b", "points": -30},
            {"name": "Target industry", "field": "industry", "one_of": ["software", "Finance"], "points": 10},
            {"name": "Dutch", "field": "country", "equals": "nl", "points": 5},
            {"name": "Mid-size", "field": "company_size", "at_least": 200, "at_most": 1000, "points": 10},
            {"name": "Free mail", "field": "email_domain", "one_of": ["gmail.com", "hotmail.com"], "points": -10},
            {"name": "Acme itself", "field": "company", "equals": "Acme", "points": -50},
        ],
        "engagement": [
            {"name": "Pricing", "activity": "page_view", "target_contains": "/pricing", "points": 8, "cap": 24},
            {"name": "Half-price promo", "activity": "page_view", "target_contains": "50%_off", "points": 3},
            {"name": "Careers", "activity": "page_view", "target_contains": "/careers", "points": -6, "cap": -12},
            {"name": "Webinar", "activity": "webinar", "points": 12},
            {"name": "Download", "activity": "download", "points": 10, "cap": 30},
            {"name": "Unsubscribed", "activity": "unsubscribe", "points": -25, "cap": -25},
        ],
    }
    scoring.update(scoring_overrides)
    stage_rules: dict[str, Any] = {
        "prospect": {"min_score": 10},
        "hot_prospect": {"min_score": 30},
        "mql": {"min_score": 50, "min_engagement": 20},
        "sql": {"min_score": 80, "min_fit": 20, "hand_raise": ["demo_request", "contact_sales"]},
    }
    stage_rules.update(stages or {})
    workspace: dict[str, Any] = {
        "sender": {"from_name": "Acme", "from_email": "hi@acme.example", "postal_address": "Street 1, Town"},
        "scoring": scoring,
        "stages": stage_rules,
    }
    if recycle is not None:
        workspace["recycle"] = recycle
    if disqualify is not None:
        workspace["disqualify"] = disqualify
    return WorkspaceConfig.model_validate(workspace)


CONFIG = make_config()
# Profiles that exercise every fit rule kind (and none at all), handed out in turn.
PROFILES: list[dict[str, Any] | None] = [
    {"title": "CEO", "industry": "software"},
    {"title": "Director", "country": "NL", "company_size": 400},
    {"title": "Student"},
    None,
    {"industry": "finance", "company_size": 500},
]
# A frequency rule: points once for three pricing views within a week.
PRICING_BURST = {
    "name": "Pricing 3x in a week",
    "activity": "page_view",
    "target_contains": "/pricing",
    "at_least": 3,
    "within_days": 7,
    "points": 15,
}


def store(
    engine: Engine,
    email: str,
    *events: Event,
    profile: dict[str, Any] | None = None,
    at: datetime = NOW - timedelta(days=3),
) -> None:
    """Store activity for one lead the way ingest does: raw records through parse_activity and store_batch.

    An event is (type, target) at `at` plus one minute per position, or (type, target, when).
    """
    stamped = [(e[0], e[1], e[2] if len(e) == 3 else at + timedelta(minutes=i)) for i, e in enumerate(events)]
    latest = max([NOW, *(when for _, _, when in stamped)])  # the records' own clock: none is in its future
    records = [
        parse_activity(
            {
                "id": f"t{next(_ids)}",
                "email": email,
                "type": kind,
                "target": target,
                "at": when.isoformat(),
                "lead": profile,
            },
            now=latest,
        )
        for kind, target, when in stamped
    ]
    with session_scope(engine) as session:
        store_batch(session=session, source="test", records=records)


def update_profile(engine: Engine, email: str, **fields: Any) -> None:
    """A CRM record that only describes the lead (no activity), stored through ingest."""
    record = parse_profile({"id": f"p{next(_ids)}", "email": email, "lead": fields})
    with session_scope(engine) as session:
        store_batch(session=session, source="crm", records=[], profiles=[record])


def requalify(
    engine: Engine,
    config: WorkspaceConfig = CONFIG,
    *,
    now: datetime = NOW,
    shard_size: int = 1000,
    run_id: str | None = None,
) -> BatchResult:
    """A full recompute: every lead, shard by shard."""
    with session_scope(engine) as session:
        shards = plan_shards(session, shard_size)
    total = BatchResult()
    for lo, hi in shards:
        with session_scope(engine) as session:
            total = total.merge(requalify_shard(session=session, config=config, lo=lo, hi=hi, now=now, run_id=run_id))
    return total


def requalify_due(engine: Engine, config: WorkspaceConfig = CONFIG, *, now: datetime) -> tuple[list[int], BatchResult]:
    """An incremental run: the leads that are due, and what rescoring them did."""
    with session_scope(engine) as session:
        due = due_lead_ids(session, now)
    with session_scope(engine) as session:
        return due, requalify_batch(session=session, config=config, now=now, ids=due)


def lead(engine: Engine, email: str) -> Lead:
    with session_scope(engine) as session:
        row = session.execute(select(Lead).where(Lead.email == email)).scalar_one()
        session.expunge(row)
        return row


def transitions(engine: Engine, email: str | None = None) -> list[StageTransition]:
    with session_scope(engine) as session:
        stmt = select(StageTransition).order_by(StageTransition.id)
        if email is not None:
            stmt = stmt.join(Lead, Lead.id == StageTransition.lead_id).where(Lead.email == email)
        rows = list(session.execute(stmt).scalars())
        session.expunge_all()
        return rows


def moves(engine: Engine, email: str) -> list[tuple[Stage, Stage, str]]:
    """A lead's stage moves as (from, to, reason), oldest first."""
    return [(t.from_stage, t.to_stage, t.reason) for t in transitions(engine, email)]


def set_stage(engine: Engine, email: str, stage: Stage) -> None:
    with session_scope(engine) as session:
        session.execute(update(Lead).where(Lead.email == email).values(stage=stage))


def scores(engine: Engine, email: str) -> tuple[float, float, float, Stage]:
    row = lead(engine, email)
    return row.fit_score, row.engagement_score, row.score, Stage(row.stage)


def stage(engine: Engine, email: str) -> Stage:
    return Stage(lead(engine, email).stage)
