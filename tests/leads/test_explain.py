"""Explanations of where a lead stands: the same numbers requalify stored, the events behind them with their
decay, what the next stage still needs; as a handoff payload and through `leadflow explain`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from leadflow.cli.main import app
from leadflow.cli.workspace_setup import init_workspace
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from leadflow.leads.requalify.explain import Explanation, LeadNotFound, as_payload, explain_lead, render_text
from tests.leads.scoring_helpers import NOW, lead, make_config, requalify, store

DAY = timedelta(days=1)
CONFIG = make_config(half_life_days=30, disqualify={"when": [{"field": "email_domain", "equals": "rival.example"}]})
CEO = {"first_name": "Anna", "title": "CEO", "industry": "software", "company": "Corp"}


def explain(engine: Engine, email: str, now: datetime = NOW) -> Explanation:
    with session_scope(engine) as session:
        explanation = explain_lead(session=session, config=CONFIG, email=email, now=now)
        session.expunge_all()
        return explanation


def test_an_explanation_adds_up_to_the_stored_score_and_shows_each_event_with_its_decay(engine: Engine) -> None:
    store(
        engine,
        "anna@corp.example",
        ("webinar", "scoring-101", NOW - 30 * DAY),
        ("page_view", "/pricing", NOW - timedelta(minutes=2)),
        ("page_view", "/pricing?plan=pro", NOW - timedelta(minutes=1)),
        profile=CEO,
    )
    requalify(engine, CONFIG)
    stored = lead(engine, "anna@corp.example")

    e = explain(engine, " Anna@Corp.example ")

    assert (e.parts.fit, e.parts.engagement, e.parts.total) == (stored.fit_score, stored.engagement_score, stored.score)
    assert (e.parts.fit, e.parts.total, e.stage) == (30, 52, Stage.mql)
    rules = {d.contribution.rule: d for d in e.rules}
    assert [(r, d.contribution.points) for r, d in rules.items()] == [
        ("Decision maker", 20),
        ("Target industry", 10),
        ("Pricing", 16),
        ("Webinar", 6),
    ]
    [webinar] = rules["Webinar"].events
    assert (webinar.target, round(webinar.age_days, 3), round(webinar.factor, 3), round(webinar.points, 2)) == (
        "scoring-101",
        30,
        0.5,
        6,
    )
    assert [ev.target for ev in rules["Pricing"].events] == ["/pricing?plan=pro", "/pricing"]  # newest first
    assert e.next_stage == Stage.sql
    assert e.missing == "needs 28 more score points — or a demo request or contact sales"
    assert [(t.from_stage, t.to_stage, t.ruleset_version) for t in e.transitions] == [
        (Stage.suspect, Stage.mql, "rules-7")
    ]

    text = render_text(e)
    assert "Anna <anna@corp.example> — CEO, Corp" in text
    assert "score 52 = fit 30 + engagement 22" in text
    assert "+6  Webinar  (1 × 12, decayed from 12)" in text
    assert "scoring-101  +6.00 (×0.50 after 30 days)" in text
    assert "next stage: sql — needs 28 more score points — or a demo request or contact sales" in text
    assert "suspect → mql  (score 52 ≥ 50 and engagement 22 ≥ 20; rules rules-7)" in text


def test_the_handoff_payload_carries_the_score_the_rules_and_a_summary(engine: Engine) -> None:
    store(engine, "anna@corp.example", ("webinar", None, NOW - 30 * DAY), ("demo_request", "/demo"), profile=CEO)
    requalify(engine, CONFIG)

    e = explain(engine, "anna@corp.example")
    payload = as_payload(e)

    assert payload["score"] == {"fit": 30, "engagement": 6, "total": 36}
    assert payload["hand_raises"] == ["demo_request"]
    assert [(r["rule"], r["part"], r["points"]) for r in payload["rules"]] == [
        ("Decision maker", "fit", 20),
        ("Target industry", "fit", 10),
        ("Webinar", "engagement", 6),
    ]
    assert payload["rules"][2]["recent_events"] == [
        {"type": "webinar", "target": None, "at": (NOW - 30 * DAY).isoformat() + "Z", "points": 6.0}
    ]
    assert payload["summary"] == render_text(e)
    assert "hand raises: demo_request" in payload["summary"] and "stage: sql" in payload["summary"]


def test_explain_shows_what_the_hand_raise_gate_did(engine: Engine) -> None:
    store(engine, "kid@gmail.com", ("demo_request", "/demo"), profile={"title": "Student"})
    store(engine, "anna@corp.example", ("demo_request", "/demo"), profile=CEO)
    requalify(engine, CONFIG)

    held = explain(engine, "kid@gmail.com")
    assert held.stage == Stage.mql and held.next_stage == Stage.sql
    assert (
        held.gate == "demo_request held for review one stage below by the sql gate: free-mail address with fit -40 < 0"
    )
    text = render_text(held)
    assert f"hand-raise gate: {held.gate}" in text
    assert "(a hand raise is held by the gate: free-mail address with fit -40 < 0)" in text  # what is missing
    assert "mql  (hand raise demo_request held for review: free-mail address with fit -40 < 0" in text

    passed = explain(engine, "anna@corp.example")
    assert passed.gate == "demo_request passes the sql gate" and passed.stage == Stage.sql


def test_leads_that_cannot_move_on_say_so(engine: Engine) -> None:
    store(engine, "spy@rival.example", ("webinar", None), profile=CEO)
    store(engine, "rejected@corp.example", ("demo_request", "/demo"), ("webinar", None), profile=CEO)
    store(engine, "rejected@corp.example", ("sales_rejected", None, NOW + DAY))
    requalify(engine, CONFIG)
    requalify(engine, CONFIG, now=NOW + 2 * DAY)

    spy = explain(engine, "spy@rival.example", now=NOW + 2 * DAY)
    assert spy.stage == Stage.disqualified and spy.next_stage is None
    assert "next stage" not in render_text(spy)

    rejected = explain(engine, "rejected@corp.example", now=NOW + 2 * DAY)
    assert rejected.stage == Stage.recycled
    # Scored on activity after recycling only: fit alone, no hand raise, no webinar.
    assert (rejected.parts.total, rejected.parts.hand_raise_types, rejected.rules[-1].contribution.rule) == (
        30,
        frozenset(),
        "Target industry",
    )
    assert rejected.missing == f"needs activity after recycling on {NOW + 2 * DAY:%Y-%m-%d}"


def test_an_unknown_email_is_not_found(engine: Engine) -> None:
    with pytest.raises(LeadNotFound, match="nobody@corp.example"):
        explain(engine, "nobody@corp.example")


def test_leadflow_explain_prints_the_stage_and_rules_of_a_lead(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("LEADFLOW_WORKSPACE", raising=False)
    init_workspace(tmp_path)
    with (tmp_path / ".env").open("a", encoding="utf-8") as env:
        env.write(f"LEADFLOW_DATABASE_URL={db_url}\n")
    config = load_config(tmp_path / "leadflow.yaml")
    store(
        engine,
        "anna@acme-logistics.nl",
        *[("page_view", "/pricing", NOW - timedelta(hours=h)) for h in range(1, 6)],
        ("webinar", "scoring-101", NOW - DAY),
        profile={"title": "Head of Marketing", "company_size": 250, "industry": "logistics"},
    )
    requalify(engine, config)
    as_of = ["--as-of", NOW.isoformat(), "--workspace", str(tmp_path)]

    result = CliRunner().invoke(app, ["explain", "Anna@acme-logistics.nl", *as_of])

    assert result.exit_code == 0, result.output
    assert "stage: mql since 2026-10-01 12:00" in result.output
    assert "+32  Pricing page  (5 × 8, cap 32 reached)" in result.output
    assert "+15  Pricing page 3× in a week" in result.output
    assert "next stage: sql — needs " in result.output

    missing = CliRunner().invoke(app, ["explain", "nobody@acme-logistics.nl", *as_of])
    assert missing.exit_code == 2
    assert "error: no lead with email 'nobody@acme-logistics.nl'" in missing.output
