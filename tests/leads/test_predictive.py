"""The learned baseline: naive Bayes by hand on a tiny dataset, its features, AUC, storing, and the demo's signal."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, select

from leadflow.leads.backtest.metrics import roc_auc
from leadflow.leads.backtest.outcomes import load_outcomes
from leadflow.leads.backtest.predictive import (
    NaiveBayes,
    count_bin,
    lead_features,
    profile_value,
    seniority,
    size_band,
    train_and_store,
)
from leadflow.leads.backtest.replay import run_backtest
from leadflow.leads.config.scoring import PredictiveConfig
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import make_engine, session_scope
from leadflow.leads.db.models import Lead
from tests.demo_workspace import ingest_demo
from tests.leads.backtest_history import AS_OF, store_history

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"


@pytest.fixture
def history(engine: Engine) -> Engine:
    return store_history(engine)


def test_naive_bayes_by_hand() -> None:
    # won: software, software, finance; lost: software, retail
    samples = [({"industry": v}, True) for v in ("software", "software", "finance")]
    samples += [({"industry": v}, False) for v in ("software", "retail")]
    model = NaiveBayes.train(samples)
    assert model is not None
    # P(won) = 3/5; P(software | won) = (2 + 1) / (3 + 3 values) = 1/2; P(software | lost) = (1 + 1) / (2 + 3) = 2/5
    # won ∝ 3/5 · 1/2 = 3/10, lost ∝ 2/5 · 2/5 = 4/25  ->  (3/10) / (3/10 + 4/25) = 15/23
    assert model.probability({"industry": "software"}) == pytest.approx(15 / 23)
    # retail: won ∝ 3/5 · 1/6, lost ∝ 2/5 · 2/5  ->  (1/10) / (1/10 + 4/25) = 5/13
    assert model.probability({"industry": "retail"}) == pytest.approx(5 / 13)


def test_two_features_multiply_and_missing_or_unseen_values_carry_no_evidence() -> None:
    samples = [
        ({"industry": "software", "size": "big"}, True),
        ({"industry": "software", "size": None}, True),
        ({"industry": "retail", "size": "small"}, False),
        ({"industry": "software", "size": "small"}, False),
    ]
    model = NaiveBayes.train(samples)
    assert model is not None
    # industry (2 values): software | won = 3/4, | lost = 2/4; size (2 values, one won lead without it):
    # big | won = (1 + 1) / (1 + 2) = 2/3, | lost = (0 + 1) / (2 + 2) = 1/4
    won, lost = 1 / 2 * 3 / 4 * 2 / 3, 1 / 2 * 2 / 4 * 1 / 4
    assert model.probability({"industry": "software", "size": "big"}) == pytest.approx(won / (won + lost))
    prior = 0.5
    assert model.probability({"industry": None, "size": "huge"}) == pytest.approx(prior)
    assert model.probability({"colour": "red"}) == pytest.approx(prior)


def test_overwhelming_evidence_gives_a_probability_not_an_overflow() -> None:
    names = [f"f{i}" for i in range(1100)]  # each feature halves the odds: 2^-1100 is beyond a float's exp range
    model = NaiveBayes.train([(dict.fromkeys(names, "b"), True), (dict.fromkeys(names, "a"), False)])
    assert model is not None
    assert model.probability(dict.fromkeys(names, "a")) < 1e-300
    assert model.probability(dict.fromkeys(names, "b")) == 1.0


def test_without_won_or_without_lost_leads_nothing_is_learned() -> None:
    assert NaiveBayes.train([({"industry": "software"}, True)]) is None
    assert NaiveBayes.train([({"industry": "software"}, False)]) is None
    assert NaiveBayes.train([]) is None


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("CEO", "executive"), ("VP Marketing", "executive"), ("Head of Sales", "director"),
        ("Marketing Director", "director"), ("Sales Manager", "manager"), ("Data Analyst", "staff"),
        ("Student", "student"), ("Marketing Intern", "student"), ("", None), (None, None),
    ],
)  # fmt: skip
def test_title_seniority(title: str | None, level: str | None) -> None:
    assert seniority(title) == level


def test_bands_and_derived_fields() -> None:
    assert [size_band(n) for n in (None, 1, 10, 11, 200, 201, 5000, 5001)] == [
        None, "1-10", "1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+"
    ]  # fmt: skip
    assert [count_bin(n) for n in (0, 1, 2, 3, 5, 6, 40)] == ["0", "1-2", "1-2", "3-5", "3-5", "6+", "6+"]
    lead = SimpleNamespace(email="anna@gmail.com", industry=" Software ", country=None, company_size=250, title="CTO")
    assert [profile_value(lead, f) for f in ("email_kind", "industry", "country", "company_size_band")] == [
        "free_mail", "software", None, "201-1000"
    ]  # fmt: skip
    assert profile_value(SimpleNamespace(email="anna@acme.example"), "email_kind") == "company"


def test_auc_on_known_rankings() -> None:
    assert roc_auc([(0.9, True), (0.8, False), (0.7, True), (0.6, False)]) == pytest.approx(3 / 4)
    assert roc_auc([(3, True), (2, True), (1, False)]) == 1.0
    assert roc_auc([(1, True), (2, False)]) == 0.0
    assert roc_auc([(1, True), (1, False), (0, False)]) == pytest.approx(3 / 4)  # a tie counts half
    assert roc_auc([(1, True), (2, True)]) is None


def test_features_come_from_one_grouped_count_per_batch(history: Engine) -> None:
    config = PredictiveConfig.model_validate(
        {"fields": ["email_kind"], "activity_counts": ["page_view", "demo_request", "email_open"]}
    )
    with session_scope(history) as session:
        features = dict(lead_features(session=session, config=config, now=AS_OF, shard_size=3))
    assert features[1] == {"email_kind": "company", "page_view": "3-5", "demo_request": "0", "email_open": "1-2"}
    assert features[5] == {"email_kind": "company", "page_view": "1-2", "demo_request": "1-2", "email_open": "0"}
    assert len(features) == 10


def test_store_writes_every_leads_probability(history: Engine) -> None:
    config = PredictiveConfig.model_validate({"fields": [], "activity_counts": ["page_view"]})
    won = {1: True, 2: True, 3: False, 4: False}  # as in the backtest tests: 3/4 for 3-5 views, 1/4 for 1-2
    with session_scope(history) as session:
        assert train_and_store(session=session, config=config, won=won, now=AS_OF, shard_size=4) == 10
    with session_scope(history) as session:
        stored = {lead_id: p for lead_id, p in session.execute(select(Lead.id, Lead.predictive_score))}
    assert stored == {1: 0.75, 2: 0.75, 3: 0.25, 4: 0.25, 5: 0.25, 6: 0.75, 7: 0.25, 8: 0.75, 9: 0.25, 10: 0.25}
    with session_scope(history) as session:
        assert train_and_store(session=session, config=config, won={1: True}, now=AS_OF) is None


def test_naive_bayes_beats_a_coin_flip_on_the_demo(tmp_path: Path) -> None:
    """The demo hides a propensity to buy behind fit and behaviour; a working model must find some of it."""
    outcomes = ingest_demo(tmp_path, leads=1000)
    engine = make_engine(f"sqlite:///{tmp_path}/leadflow.db")
    try:
        with session_scope(engine) as session:
            config = load_config(EXAMPLE_CONFIG)
            report = run_backtest(session=session, rule_sets=[("example", config)], outcomes=load_outcomes(outcomes))
    finally:
        engine.dispose()
    assert report.test.won >= 5 and report.test.lost >= 20
    assert report.predictive_auc is not None and report.predictive_auc > 0.6
