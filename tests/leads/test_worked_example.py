"""The worked example in docs/configuration.md, computed by the real engine on the shipped config."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import ActivityType, Lead, Stage, StageTransition
from leadflow.leads.ingest.records import ActivityRecord
from leadflow.leads.ingest.store import store_batch
from leadflow.leads.requalify.explain import explain_lead, render_text
from leadflow.leads.requalify.run import requalify_shard

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
NOW = datetime(2026, 10, 1, 9, 0)


def anna_events() -> list[tuple[ActivityType, str, int]]:
    """(type, target, days ago) as the docs list them."""
    return (
        [(ActivityType.page_view, "/pricing", 0)] * 5
        + [(ActivityType.page_view, "/case-studies/logistics", 30)] * 2
        + [(ActivityType.page_view, f"/blog/{i}", 30) for i in range(12)]
        + [(ActivityType.email_open, "warm-up", 60)] * 6
        + [(ActivityType.download, "ebook-lead-scoring", 30), (ActivityType.webinar, "scoring-101", 30)]
    )


def test_anna_is_an_mql_with_the_documented_scores(engine: Engine) -> None:
    config = load_config(EXAMPLE)
    profile = {"first_name": "Anna", "title": "Head of Marketing", "company_size": 250, "industry": "logistics"}
    records = [
        ActivityRecord(
            source_id=f"e{i}",
            email="anna.jansen@acme-logistics.nl",
            type=kind,
            occurred_at=NOW - timedelta(days=days, minutes=i),
            target=target,
            profile=profile if i == 0 else None,
        )
        for i, (kind, target, days) in enumerate(anna_events())
    ]
    with session_scope(engine) as session:
        store_batch(session=session, source="docs", records=records)
    with session_scope(engine) as session:
        requalify_shard(session=session, config=config, lo=1, hi=10, now=NOW)
    with session_scope(engine) as session:
        lead = session.execute(select(Lead)).scalar_one()
        move = session.execute(select(StageTransition)).scalar_one()
        text = render_text(explain_lead(session=session, config=config, email=lead.email, now=NOW))
        scores, stage = (lead.fit_score, lead.engagement_score, lead.score), lead.stage
        reason, version = move.reason, move.ruleset_version
    # fit 20 + 10 + 10; engagement 32 (capped) + 15 (burst) + 4 + 12 + 1.5 + 5 + 6, decayed by age
    assert scores == (40, 75.5, 115.5)
    assert stage == Stage.mql
    assert reason == "score 115.5 ≥ 85 and engagement 75.5 ≥ 60"
    assert version == config.scoring.version
    assert "next stage: sql — needs 4.5 more score points — or a demo request or quote request or contact sales" in text
    assert "+32  Pricing page  (5 × 8, cap 32 reached)" in text


def test_anna_is_recycled_on_day_66_by_the_runs_that_come_due_as_by_a_full_recompute(engine: Engine) -> None:
    """Incremental runs look only at due leads; they must find the MQL floor crossing in time."""
    from leadflow.leads.requalify.run import due_lead_ids, requalify_batch

    config = load_config(EXAMPLE)
    records = [
        ActivityRecord(source_id=f"e{i}", email="anna@acme-logistics.nl", type=kind, target=target,
                       occurred_at=NOW - timedelta(days=days, minutes=i),
                       profile={"title": "Head of Marketing", "company_size": 250, "industry": "logistics"})
        for i, (kind, target, days) in enumerate(anna_events())
    ]  # fmt: skip
    with session_scope(engine) as session:
        store_batch(session=session, source="docs", records=records)
    with session_scope(engine) as session:
        requalify_batch(session=session, config=config, now=NOW, ids=[1])
    runs = 0
    while True:
        with session_scope(engine) as session:
            due_at = session.get(Lead, 1).rescore_at  # type: ignore[union-attr]
            assert due_at is not None and due_at < NOW + timedelta(days=90), "the crossing was never scheduled"
            assert due_lead_ids(session, due_at) == [1]
            result = requalify_batch(session=session, config=config, now=due_at, ids=[1])
        runs += 1
        if result.moves:
            break
    assert dict(result.moves) == {("mql", "recycled"): 1}
    assert timedelta(days=65.5) < due_at - NOW < timedelta(days=66.5)
    assert runs <= 6  # a handful of scheduled looks, not one per hour
