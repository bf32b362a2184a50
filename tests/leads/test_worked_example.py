"""The worked example in docs/configuration.md, computed by the real engine on the shipped config."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from leads.config import load_config
from leads.db import session_scope
from leads.ingest import store_batch
from leads.models import ActivityType, Lead, Stage, StageTransition
from leads.records import ActivityRecord
from leads.requalify import requalify_shard

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "examples" / "leadflow.yaml"
NOW = datetime(2026, 10, 1, 9, 0)


def test_anna_is_an_mql_with_the_documented_scores(engine: Engine) -> None:
    config = load_config(EXAMPLE)
    events = (
        [(ActivityType.page_view, "/pricing")] * 5
        + [(ActivityType.page_view, "/case-studies/logistics")] * 2
        + [(ActivityType.page_view, f"/blog/{i}") for i in range(12)]
        + [(ActivityType.email_open, "warm-up")] * 6
        + [(ActivityType.download, "ebook-lead-scoring"), (ActivityType.webinar, "scoring-101")]
    )
    profile = {"first_name": "Anna", "title": "Head of Marketing", "company_size": 250, "industry": "logistics"}
    records = [
        ActivityRecord(
            source_id=f"e{i}",
            email="anna.jansen@acme-logistics.nl",
            type=kind,
            occurred_at=NOW - timedelta(days=20 - i % 20),
            target=target,
            profile=profile if i == 0 else None,
        )
        for i, (kind, target) in enumerate(events)
    ]
    with session_scope(engine) as session:
        store_batch(session=session, source="docs", records=records)
    with session_scope(engine) as session:
        requalify_shard(session=session, config=config, lo=1, hi=10, now=NOW)
    with session_scope(engine) as session:
        lead = session.execute(select(Lead)).scalar_one()
        move = session.execute(select(StageTransition)).scalar_one()
        assert (lead.fit_score, lead.engagement_score, lead.score) == (40, 83, 123)
        assert lead.stage == Stage.mql
        assert move.reason == "score 123 ≥ 115 and engagement 83 ≥ 80"
        assert move.ruleset_version == config.scoring.version
