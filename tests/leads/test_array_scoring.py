"""Requalify on arrays: the batch path stores exactly what the per-lead path stores, explanations add up
to the stored scores to the bit, and helper processes share a round without scoring a lead twice."""

from __future__ import annotations

import os
import random
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Lead, StageTransition, WorkShard
from leadflow.leads.requalify.explain import explain_lead
from leadflow.leads.requalify.helpers import HelperFailed, finish_helpers, start_helpers
from leadflow.leads.requalify.rounds import JOB, drain_round, plan_round
from leadflow.leads.requalify.run import plan_shards, requalify_batch
from leadflow.leads.work.claims import close_round, open_round
from tests.leads.scoring_helpers import PRICING_BURST, PROFILES, RUN_AT, make_config, store

DAY = timedelta(days=1)
T0 = RUN_AT
EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"

# Fractional points and weights make the roundings and the order of additions matter.
RULES = make_config(
    half_life_days=21,
    recycle={"mql_below_score": 45},
    disqualify={"when": [{"field": "email_domain", "one_of": ["rival.example"]}]},
    engagement=[
        {"name": "Pricing", "activity": "page_view", "target_contains": "/pricing", "points": 7.35, "cap": 30},
        {"name": "Any page", "activity": "page_view", "points": 0.45, "cap": 9.9},
        {"name": "Careers", "activity": "page_view", "target_contains": "/CAREERS", "points": -6.1, "cap": -12.2},
        {"name": "Webinar", "activity": "webinar", "points": 12.125},
        {"name": "Opened", "activity": "email_open", "points": 0.333, "cap": 5, "decays": False},
        {"name": "Unsubscribed", "activity": "unsubscribe", "points": -25, "cap": -25, "decays": False},
    ],
    frequency=[PRICING_BURST],
    inactivity=[{"name": "Quiet for 45 days", "days": 45, "points": -7.5}],
    total={"fit": 0.7, "engagement": 1.3},
)
KINDS = [
    ("page_view", "/pricing"), ("page_view", "/blog"), ("page_view", "/careers/jobs"), ("page_view", "/Pricing"),
    ("webinar", None), ("email_open", None), ("download", "/ebook"), ("unsubscribe", None),
]  # fmt: skip
RARE = [("demo_request", "/demo"), ("sales_rejected", None), ("deal_won", None), ("deal_lost", None)]


def populate(engine: Engine, leads: int = 160, seed: int = 11) -> None:
    rng = random.Random(seed)
    for n in range(leads):
        events: list[tuple[str, str | None, datetime]] = []
        for _ in range(rng.randrange(0, 14)):
            kind, target = rng.choice(KINDS)
            events.append((kind, target, T0 - timedelta(days=rng.uniform(0.2, 100), microseconds=rng.randrange(10**6))))
        if n % 11 == 0:
            kind, target = rng.choice(RARE)
            events.append((kind, target, T0 - timedelta(days=rng.uniform(1, 50))))
        domain = ["corp.example", "gmail.com", "rival.example"][n % 23 % 3] if n % 23 < 3 else "corp.example"
        store(engine, f"lead{n:03d}@{domain}", *events, profile=PROFILES[n % len(PROFILES)])
    ceo = {"title": "CEO", "industry": "software"}
    # An MQL at T0 that decays below the floor later, and an SQL that sales reject after T0.
    store(engine, "decays@corp.example", *[("webinar", None, T0 - DAY)] * 4, profile=ceo)
    store(engine, "asks@corp.example", ("demo_request", "/demo", T0 - 2 * DAY), profile=ceo)
    store(engine, "asks@corp.example", ("sales_rejected", None, T0 + 3 * DAY))
    # A hand raise the default gate holds for review (free mail, negative fit), and one it lets through.
    store(engine, "student@gmail.com", ("demo_request", "/demo", T0 - 2 * DAY), profile={"title": "Student"})
    store(engine, "founder@gmail.com", ("contact_sales", None, T0 - 2 * DAY), profile=ceo)


def run(engine: Engine, config: WorkspaceConfig, now: datetime, *, vectorised: bool, shard: int = 40) -> None:
    with session_scope(engine) as session:
        shards = plan_shards(session, shard)
    for lo, hi in shards:
        with session_scope(engine) as session:
            requalify_batch(session=session, config=config, now=now, lo=lo, hi=hi, vectorised=vectorised)


def stored(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every lead's scores, stage and schedule, and every transition, exactly as stored."""
    with session_scope(engine) as session:
        leads = session.execute(
            select(Lead.email, Lead.fit_score, Lead.engagement_score, Lead.score, Lead.stage, Lead.stage_changed_at,
                   Lead.rescore_at, Lead.scored_at).order_by(Lead.email)
        ).all()  # fmt: skip
        moves = session.execute(
            select(Lead.email, StageTransition.from_stage, StageTransition.to_stage, StageTransition.reason,
                   StageTransition.score, StageTransition.fit_score, StageTransition.engagement_score)
            .join(Lead, Lead.id == StageTransition.lead_id)
            .order_by(Lead.email, StageTransition.id)
        ).all()  # fmt: skip
    return [tuple(r) for r in leads], [tuple(m) for m in moves]


def test_the_array_path_stores_what_the_per_lead_path_stores(engine: Engine, twin: Engine) -> None:
    for db in (engine, twin):
        populate(db)
    scheduled = 0
    for now in (T0, T0 + 9 * DAY, T0 + 50 * DAY):  # first run, then time alone moves and decays leads
        run(engine, RULES, now, vectorised=True)
        run(twin, RULES, now, vectorised=False)
        leads, moves = stored(engine)
        assert (leads, moves) == stored(twin)
        scheduled += sum(row[6] is not None for row in leads)
    stages = {row[4] for row in leads}
    assert {"suspect", "prospect", "recycled", "disqualified", "customer"} <= stages  # every kind of lead ran
    assert scheduled > 20  # and next rescore times (decay, windows, inactivity) were compared too
    assert any(m[2] == "recycled" for m in moves)


def test_explanations_add_up_to_the_stored_scores_to_the_bit(engine: Engine) -> None:
    populate(engine, leads=60, seed=5)
    run(engine, RULES, T0, vectorised=True)
    with session_scope(engine) as session:
        rows = session.execute(select(Lead.email, Lead.fit_score, Lead.engagement_score, Lead.score)).all()
        for email, fit, engagement, total in rows:
            parts = explain_lead(session=session, config=RULES, email=email, now=T0).parts
            assert (parts.fit, parts.engagement, parts.total) == (fit, engagement, total), email


def _workspace(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace folder the helpers open as the flow would: the example rules, the test database."""
    folder = tmp_path / "ws"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "leadflow.yaml")
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.delenv("LEADFLOW_CONFIG_PATH", raising=False)
    return folder


def _example_config(folder: Path) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate(yaml.safe_load((folder / "leadflow.yaml").read_text()))


def test_a_helper_process_shares_the_round_and_the_result_is_the_same(
    engine: Engine, twin: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _workspace(tmp_path, db_url, monkeypatch)
    config = _example_config(folder)
    for db in (engine, twin):
        populate(db, leads=120, seed=3)
    run(twin, config, T0, vectorised=True, shard=10)

    plan = lambda s: plan_round(s, config, now=T0, shard_size=10, full=True)  # noqa: E731
    round_ = open_round(engine, job=JOB, worker="main", plan=plan)
    helpers = start_helpers(1, workspace=str(folder), round_id=round_.id, now=T0, worker="main")
    assert all(db_url not in " ".join(h.process.args) for h in helpers)  # no database URL on a command line
    _until_claimed_by(engine, round_.id, "main/p1")  # the helper is at work: now this process joins in
    mine, my_shards = drain_round(engine, config, round_id=round_.id, now=T0, worker="main")
    helped, helper_shards = finish_helpers(helpers)
    assert close_round(engine, round_id=round_.id, worker="main") is not None

    assert my_shards + helper_shards == round_.shards > 10
    assert helper_shards >= 1 and my_shards >= 1  # both worked side by side
    with session_scope(engine) as session:
        assert mine.leads + helped.leads == len(session.execute(select(Lead.id)).all())
        workers = set(session.execute(select(WorkShard.claimed_by).where(WorkShard.round_id == round_.id)).scalars())
    assert workers == {"main", "main/p1"}
    assert stored(engine) == stored(twin)  # as if one process had scored every shard


def _until_claimed_by(engine: Engine, round_id: int | None, worker: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            if session.execute(
                select(WorkShard.id).where(WorkShard.round_id == round_id, WorkShard.claimed_by == worker)
            ).first():
                return
        time.sleep(0.02)
    raise AssertionError(f"{worker} claimed no shard within a minute")


def test_a_failing_helper_is_reported_by_name(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _workspace(tmp_path, db_url, monkeypatch)
    (folder / "leadflow.yaml").write_text("scoring: [not, a, mapping]\n")
    helpers = start_helpers(1, workspace=str(folder), round_id=1, now=T0, worker="w")
    with pytest.raises(HelperFailed, match=r"w/p1 exited with 1: ConfigError: .*leadflow.yaml.*stages: Field required"):
        finish_helpers(helpers)
    assert os.environ["LEADFLOW_DATABASE_URL"] == db_url
