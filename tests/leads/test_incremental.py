"""Incremental requalify: rescoring only the leads that are due gives what a full recompute gives.

Leads are due when ingest stored something new for them, or when time alone (decay, a closing
frequency window, the start of an inactivity penalty) could change their stage: `rescore_at`.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, select

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Lead, Stage, StageTransition
from leadflow.leads.requalify.ruleset import remember_ruleset
from leadflow.leads.requalify.run import due_lead_ids, requalify_batch
from leadflow.leads.scoring.rescore import next_rescore_at
from leadflow.leads.scoring.rules import LeadSignals, ScoreParts
from tests.leads.scoring_helpers import (
    NOW,
    PRICING_BURST,
    PROFILES,
    RUN_AT,
    Event,
    lead,
    make_config,
    requalify,
    requalify_due,
    stage,
    store,
)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def close_to(value: datetime | None, expected: datetime) -> bool:
    return value is not None and abs((value - expected).total_seconds()) < 1


# --- when a lead is due again without new activity ------------------------------------------------------

TIMED = make_config(
    half_life_days=30,
    recycle={"mql_below_score": 45},
    engagement=[
        {"name": "Webinar", "activity": "webinar", "points": 12},
        {"name": "Careers", "activity": "page_view", "target_contains": "/careers", "points": -6},
    ],
    frequency=[PRICING_BURST],
    inactivity=[{"name": "Quiet", "days": 200, "points": -5}],
    stages={"sql": {"hand_raise": ["demo_request"]}},
)


def test_rescore_at_is_the_hand_computed_moment_the_stage_could_change(engine: Engine) -> None:
    # fit 40 + 5 webinars now (60, decaying): score 100. Below the floor 45 once 40 + 60·2^(-t/30) < 45,
    # that is after 30·log2(12) days.
    store(engine, "mql@corp.example", *[("webinar", None, NOW)] * 5,
          profile={"title": "CEO", "industry": "software", "company_size": 300})  # fmt: skip
    # fit 20 - 12 (careers, decaying towards 0) = 8: a prospect (10) once 20 - 12·2^(-t/30) ≥ 10: 30·log2(1.2) days.
    store(engine, "rising@corp.example", *[("page_view", "/careers", NOW)] * 2, profile={"title": "CTO"})
    # The burst counts while its oldest view is within 7 days.
    store(engine, "burst@corp.example", *[("page_view", "/pricing", NOW - d * DAY) for d in (1, 2, 3)])
    # Quiet for 200 days ten days from now.
    store(engine, "quiet@corp.example", ("page_view", "/blog", NOW - 190 * DAY))
    store(engine, "won@corp.example", ("webinar", None, NOW), ("deal_won", None, NOW))
    store(engine, "dropped@corp.example", ("demo_request", None, NOW), ("sales_disqualified", None, NOW))

    requalify(engine, TIMED)

    assert [stage(engine, f"{n}@corp.example") for n in ("mql", "rising", "burst", "quiet")] == [
        Stage.mql,
        Stage.suspect,
        Stage.prospect,
        Stage.suspect,
    ]
    falls = NOW + timedelta(days=30 * math.log2(12))
    rises = NOW + timedelta(days=30 * math.log2(1.2))
    # Scores are rounded to cents, so the stored score crosses a little after the exact moment (here within
    # an hour): a schedule aiming at either is fine; never a day late, nor weeks early.
    assert falls - timedelta(seconds=1) <= lead(engine, "mql@corp.example").rescore_at <= falls + 2 * HOUR
    assert rises - HOUR <= lead(engine, "rising@corp.example").rescore_at <= rises + HOUR
    assert close_to(lead(engine, "burst@corp.example").rescore_at, NOW + 4 * DAY)
    assert close_to(lead(engine, "quiet@corp.example").rescore_at, NOW + 10 * DAY)
    assert lead(engine, "won@corp.example").rescore_at is None  # customers and disqualified leads never move
    assert lead(engine, "dropped@corp.example").rescore_at is None

    # Incremental runs see each move when a full recompute would, and not before.
    for at, rising, mql in [
        (rises - HOUR, Stage.suspect, Stage.mql),
        (rises + HOUR, Stage.prospect, Stage.mql),
        (falls - HOUR, Stage.prospect, Stage.mql),
        (falls + HOUR, Stage.prospect, Stage.mql),  # the stored score is 45.00: on the floor, not below it
        (falls + 2 * HOUR, Stage.prospect, Stage.recycled),  # 44.99
    ]:
        requalify_due(engine, TIMED, now=at)
        assert (stage(engine, "rising@corp.example"), stage(engine, "mql@corp.example")) == (rising, mql), at


def test_next_rescore_at_by_hand() -> None:
    mql = ScoreParts(fit=40, engagement=60, total=100, positive=60)  # 60 decaying, floor 45, half-life 30
    at = next_rescore_at(parts=mql, stage=Stage.mql, config=TIMED, now=NOW)
    exact = NOW + timedelta(days=30 * math.log2(60 / (45 - 40)))
    assert at is not None and exact <= at <= exact + 2 * HOUR

    burst = ScoreParts(fit=0, engagement=15, total=15, signals=LeadSignals(frequency_lapses_at=NOW + 4 * DAY))
    assert next_rescore_at(parts=burst, stage=Stage.prospect, config=TIMED, now=NOW) == NOW + 4 * DAY

    quiet = ScoreParts(fit=0, engagement=0, total=0, signals=LeadSignals(quiet_since=NOW - 190 * DAY))
    assert next_rescore_at(parts=quiet, stage=Stage.suspect, config=TIMED, now=NOW) == NOW + 10 * DAY
    penalised = ScoreParts(fit=0, engagement=-5, total=-5, signals=LeadSignals(quiet_since=NOW - 201 * DAY))
    assert next_rescore_at(parts=penalised, stage=Stage.suspect, config=TIMED, now=NOW) is None

    for frozen in (Stage.customer, Stage.disqualified):
        assert next_rescore_at(parts=mql, stage=frozen, config=TIMED, now=NOW) is None


# --- incremental equals full ----------------------------------------------------------------------------

MIXED = make_config(
    half_life_days=30,
    recycle={"mql_below_score": 45},
    disqualify={"when": [{"field": "email_domain", "one_of": ["rival.example"]}]},
    frequency=[PRICING_BURST],
    inactivity=[{"name": "Quiet for 90 days", "days": 90, "points": -10}],
)
T0 = RUN_AT
T1 = T0 + 40 * DAY
KINDS: list[Event] = [
    ("page_view", "/pricing"),
    ("page_view", "/blog"),
    ("page_view", "/careers"),
    ("webinar", None),
    ("download", "/ebook"),
    ("email_open", None),
]


def history() -> list[tuple[str, list[Event], dict[str, Any] | None]]:
    """50 leads with mixed activity over the 120 days before T0, plus a few with a known story."""
    rng = random.Random(2026)
    leads = []
    for n in range(44):
        events: list[Event] = [
            (*rng.choice(KINDS), T0 - timedelta(days=rng.uniform(0.5, 120))) for _ in range(rng.randrange(0, 12))
        ]
        if n % 9 == 0:
            events.append(("demo_request", "/demo", T0 - timedelta(days=rng.uniform(1, 60))))
        domain = "rival.example" if n % 17 == 5 else "corp.example"
        leads.append((f"lead{n:02d}@{domain}", events, PROFILES[n % len(PROFILES)]))
    ceo = {"title": "CEO", "industry": "software"}
    leads += [
        # An MQL at T0 (30 + 36 decayed a day) that decays below the floor (45) about 37 days later.
        ("decays@corp.example", [("webinar", None, T0 - DAY)] * 3, ceo),
        ("will-raise-hand@corp.example", [("webinar", None, T0 - 5 * DAY)], ceo),
        ("will-be-rejected@corp.example", [("contact_sales", None, T0 - 5 * DAY)], ceo),
        ("will-win@corp.example", [("webinar", None, T0 - 5 * DAY)], None),
        ("will-engage@corp.example", [("page_view", "/blog", T0 - 30 * DAY)], ceo),
        ("burst@corp.example", [("page_view", "/pricing", T0 - d * DAY) for d in (1, 2, 3)], None),
    ]
    return leads


NEW_ACTIVITY: dict[str, list[Event]] = {
    "will-raise-hand@corp.example": [("demo_request", "/demo", T0 + 10 * DAY)],
    "will-be-rejected@corp.example": [("sales_rejected", None, T0 + 12 * DAY)],
    "will-win@corp.example": [("deal_won", None, T0 + 20 * DAY)],
    "will-engage@corp.example": [("webinar", None, T1 - DAY), ("download", "/ebook", T1 - DAY)],
    "lead03@corp.example": [("page_view", "/careers", T0 + 30 * DAY)],
}


def build(engine: Engine, config: WorkspaceConfig) -> None:
    """The same starting state in any database: the history, a full requalify at T0, then new activity."""
    for email, events, profile in history():
        store(engine, email, *events, profile=profile)
    requalify(engine, config, now=T0)
    with session_scope(engine) as session:
        remember_ruleset(session, config, T0)
    for email, events in NEW_ACTIVITY.items():
        store(engine, email, *events)


def outcome(engine: Engine) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    with session_scope(engine) as session:
        stages = dict(session.execute(select(Lead.email, Lead.stage)).all())
        moves = session.execute(
            select(Lead.email, StageTransition.from_stage, StageTransition.to_stage, StageTransition.reason,
                   StageTransition.at, StageTransition.score)
            .join(Lead, Lead.id == StageTransition.lead_id)
            .order_by(Lead.email, StageTransition.id)
        ).all()  # fmt: skip
    return stages, [tuple(m) for m in moves]


def test_an_incremental_run_moves_every_lead_as_a_full_recompute_does(engine: Engine, twin: Engine) -> None:
    build(engine, MIXED)
    build(twin, MIXED)
    assert outcome(engine) == outcome(twin)
    with session_scope(engine) as session:
        scored_at_t0 = dict(session.execute(select(Lead.email, Lead.scored_at)).all())
    assert set(scored_at_t0.values()) == {T0}

    due, incremental = requalify_due(engine, MIXED, now=T1)
    full = requalify(twin, MIXED, now=T1)

    stages, moves = outcome(engine)
    assert (stages, moves) == outcome(twin)
    assert incremental.moves == full.moves
    assert full.moves[("mql", "recycled")] >= 1 and sum(full.moves.values()) >= 6
    assert stages["decays@corp.example"] == Stage.recycled
    assert stages["will-raise-hand@corp.example"] == Stage.sql
    assert stages["will-be-rejected@corp.example"] == Stage.recycled
    assert stages["will-win@corp.example"] == Stage.customer
    assert stages["will-engage@corp.example"] == Stage.mql

    with session_scope(engine) as session:
        emails = dict(session.execute(select(Lead.id, Lead.email)).all())
        scored_at = dict(session.execute(select(Lead.email, Lead.scored_at)).all())
    due_emails = {emails[i] for i in due}
    assert set(NEW_ACTIVITY) | {"decays@corp.example", "burst@corp.example"} <= due_emails
    assert len(due_emails) < len(emails) / 2  # most leads had nothing that could move them
    assert {e for e, at in scored_at.items() if at == T1} == due_emails
    assert all(scored_at[e] == T0 for e in emails.values() if e not in due_emails)  # not touched


def test_a_lead_marked_due_while_requalify_runs_stays_due(engine: Engine) -> None:
    """Ingest stores new activity between requalify's read of a lead and its write: the mark survives."""
    store(engine, "anna@corp.example", ("webinar", None, RUN_AT - DAY))
    requalify(engine, now=RUN_AT)
    store(engine, "anna@corp.example", ("webinar", None, RUN_AT + DAY))
    marked = lead(engine, "anna@corp.example").rescore_at

    concurrent: list[str] = []

    def ingest_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE LEAD ") and not concurrent:
            concurrent.append(statement)  # once, and not for ingest's own update below
            store(engine, "anna@corp.example", ("download", "/ebook", RUN_AT + 2 * DAY))

    event.listen(engine, "before_cursor_execute", ingest_meanwhile)
    try:
        with session_scope(engine) as session:
            [lead_id] = due_lead_ids(session, RUN_AT + 3 * DAY)
            requalify_batch(session=session, config=make_config(), now=RUN_AT + 3 * DAY, ids=[lead_id])
    finally:
        event.remove(engine, "before_cursor_execute", ingest_meanwhile)

    assert concurrent
    anna = lead(engine, "anna@corp.example")
    assert anna.engagement_score == 24  # what requalify read: two webinars, not yet the download
    assert anna.rescore_at is not None and anna.rescore_at > marked  # ingest's newer mark, not requalify's plan
    due, result = requalify_due(engine, make_config(), now=RUN_AT + 3 * DAY)
    assert due == [lead_id] and result.rescored == 1
    assert lead(engine, "anna@corp.example").engagement_score == 34
