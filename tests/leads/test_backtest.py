"""Backtests on a small hand-built history whose answers are worked out by hand, on SQLite and PostgreSQL.

Ten leads, one page view = 10 points, stages at 10 / 20 / 30 / 40 points (or a demo request for
SQL), no decay, and a competitor domain that is disqualified. Every event happens at 09:00 on its
day; the history starts at day 0 08:00 and is evaluated at day 28 08:00, so week k ends at day 7k
08:00 and an event on day d falls in week d // 7 + 1.

    lead  page views on days  other                    stage at the end  outcome
    L1    1 2 3 4             email open day 0 08:00   SQL (40)          won
    L2    1 8 9                                        MQL (30)          won
    L3    2 10                                         hot (20)          lost
    L4    5                                            prospect          lost
    L5    12                  demo request day 22      SQL (hand raise)  won
    L6    15 16 17                                     MQL               lost
    L7    20                                           prospect          open
    L8    21 22 23 24         competitor domain        disqualified      lost
    L9    25                                           prospect          open
    L10   26 27                                        hot               won
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from leadflow.leads.backtest.metrics import StageMetrics
from leadflow.leads.backtest.outcomes import (
    Outcome,
    OutcomeKind,
    Outcomes,
    OutcomesError,
    load_outcomes,
    outcomes_from_crm,
)
from leadflow.leads.backtest.replay import (
    THRESHOLDS,
    BacktestError,
    BacktestReport,
    default_split,
    latest_activity,
    run_backtest,
    stages_as_of,
)
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from tests.leads.backtest_history import AS_OF, OUTCOMES, T0, store_events, store_history


def make_config(version: str = "views-v1", sql_score: float = 40) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate(
        {
            "sender": {"from_name": "Acme", "from_email": "hi@acme.example", "postal_address": "Street 1, Town"},
            "scoring": {
                "version": version,
                "engagement": [{"name": "Page view", "activity": "page_view", "points": 10}],
            },
            "stages": {
                "prospect": {"min_score": 10},
                "hot_prospect": {"min_score": 20},
                "mql": {"min_score": 30},
                "sql": {"min_score": sql_score, "hand_raise": ["demo_request"]},
            },
            "disqualify": {"when": [{"field": "email_domain", "one_of": ["rival.example"]}]},
            "predictive": {"fields": [], "activity_counts": ["page_view"]},
        }
    )


@pytest.fixture
def history(engine: Engine) -> Engine:
    return store_history(engine)


def known_outcomes() -> Outcomes:
    by_email = {email: Outcome(OutcomeKind(kind)) for email, kind in OUTCOMES.items()}
    return Outcomes(by_email={**by_email, "ghost@corp.example": Outcome(OutcomeKind.won)}, source="test")


def backtest(engine: Engine, **kwargs: Any) -> BacktestReport:
    rule_sets = kwargs.pop("rule_sets", [("views-v1", make_config())])
    with session_scope(engine) as session:
        return run_backtest(session=session, rule_sets=rule_sets, outcomes=known_outcomes(), as_of=AS_OF, **kwargs)


def row(selected: int, won: int, lost: int, precision: Any, recall: Any, lift: Any, conversion: Any) -> tuple[Any, ...]:
    return (selected, won, lost, precision, recall, lift, conversion)


def as_rows(metrics: list[StageMetrics]) -> dict[Stage, tuple[Any, ...]]:
    return {
        m.stage: (m.selected, m.won, m.lost, *(None if v is None else pytest.approx(v) for v in
                  (m.precision, m.recall, m.lift, m.conversion)))
        for m in metrics
    }  # fmt: skip


def test_stateless_stages_at_the_end_and_at_a_week_end(history: Engine) -> None:
    with session_scope(history) as session:
        final = stages_as_of(session=session, config=make_config(), now=AS_OF)
        week_two = stages_as_of(session=session, config=make_config(), now=T0 + timedelta(days=14, hours=8))
    assert [final[i].stage for i in range(1, 11)] == [
        Stage.sql, Stage.mql, Stage.hot_prospect, Stage.prospect, Stage.sql,
        Stage.mql, Stage.prospect, Stage.disqualified, Stage.prospect, Stage.hot_prospect,
    ]  # fmt: skip
    assert [final[i].score for i in (1, 5, 10)] == [40, 10, 20]
    # only leads seen by then, each as its activity up to then says
    assert {i: p.stage for i, p in week_two.items()} == {
        1: Stage.sql, 2: Stage.mql, 3: Stage.hot_prospect, 4: Stage.prospect, 5: Stage.prospect
    }  # fmt: skip


def test_metrics_on_all_leads_and_leads_per_week(history: Engine) -> None:
    report = backtest(history)
    assert (report.all.leads, report.all.won, report.all.lost, report.all.base_rate) == (10, 4, 4, 0.5)
    assert report.unmatched_outcomes == 1 and report.weeks == 4
    (rules,) = report.rule_sets
    assert as_rows(rules.all) == {
        Stage.prospect: row(9, 4, 3, 4 / 7, 1, 8 / 7, 4 / 9),
        Stage.hot_prospect: row(6, 4, 2, 2 / 3, 1, 4 / 3, 2 / 3),
        Stage.mql: row(4, 3, 1, 3 / 4, 3 / 4, 3 / 2, 3 / 4),
        Stage.sql: row(2, 2, 0, 1, 1 / 2, 2, 1),
    }
    assert rules.weekly == {
        Stage.prospect: [4, 1, 2, 2],
        Stage.hot_prospect: [1, 2, 1, 2],  # L5 counts in week 4: the hand raise lifts it past hot at once
        Stage.mql: [1, 1, 1, 1],
        Stage.sql: [1, 0, 0, 1],
    }
    assert [m.per_week for m in rules.all] == [2.25, 1.5, 1.0, 0.5]


def test_default_split_keeps_the_newest_thirty_percent_for_testing(history: Engine) -> None:
    report = backtest(history)
    assert report.split == T0 + timedelta(days=21, hours=9)  # L8's first view: 7 leads before it, 3 from it on
    assert (report.train.leads, report.test.leads) == (7, 3)
    assert (report.test.won, report.test.lost, report.test.open) == (1, 1, 1)
    assert as_rows(report.rule_sets[0].test) == {
        Stage.prospect: row(2, 1, 0, 1, 1, 2, 1 / 2),
        Stage.hot_prospect: row(1, 1, 0, 1, 1, 2, 1),
        Stage.mql: row(0, 0, 0, None, 0, None, None),
        Stage.sql: row(0, 0, 0, None, 0, None, None),
    }
    assert default_split([]) is None


def test_test_set_metrics_naive_bayes_at_the_same_counts_and_both_aucs(history: Engine) -> None:
    report = backtest(history, split=T0 + timedelta(days=12))
    assert (report.train.leads, report.train.won, report.train.lost) == (4, 2, 2)
    assert (report.test.leads, report.test.won, report.test.lost) == (6, 2, 2)
    (rules,) = report.rule_sets
    assert as_rows(rules.test) == {
        Stage.prospect: row(5, 2, 1, 2 / 3, 1, 4 / 3, 2 / 5),
        Stage.hot_prospect: row(3, 2, 1, 2 / 3, 1, 4 / 3, 2 / 3),
        Stage.mql: row(2, 1, 1, 1 / 2, 1 / 2, 1, 1 / 2),
        Stage.sql: row(1, 1, 0, 1, 1 / 2, 2, 1),
    }
    # Trained on L1, L2 (won, 3-5 views) and L3, L4 (lost, 1-2 views): P(won) is 3/4 for 3-5 views and
    # 1/4 for 1-2. The test leads by probability: L6, L8 (3/4), then L5, L7, L9, L10 (1/4, by id).
    assert as_rows(rules.predictive) == {
        Stage.prospect: row(5, 1, 2, 1 / 3, 1 / 2, 2 / 3, 1 / 5),
        Stage.hot_prospect: row(3, 1, 2, 1 / 3, 1 / 2, 2 / 3, 1 / 3),
        Stage.mql: row(2, 0, 2, 0, 0, 0, 0),
        Stage.sql: row(1, 0, 1, 0, 0, 0, 0),
    }
    # decided test leads: won L5 (10 points), L10 (20); lost L6 (30), L8 (disqualified, ranks last)
    assert rules.auc == 0.5
    assert report.predictive_auc == 0.0  # both lost leads had more views than both won ones


def test_two_rule_sets_side_by_side(history: Engine) -> None:
    stricter = make_config("views-v2", sql_score=30)  # every MQL is an SQL now
    report = backtest(history, rule_sets=[("views-v1", make_config()), ("views-v2", stricter)])
    first, second = report.rule_sets
    assert (first.name, second.name) == ("views-v1", "views-v2")
    assert as_rows(first.all)[Stage.sql] == row(2, 2, 0, 1, 1 / 2, 2, 1)
    assert as_rows(second.all)[Stage.sql] == row(4, 3, 1, 3 / 4, 3 / 4, 3 / 2, 3 / 4)
    assert second.weekly[Stage.sql] == second.weekly[Stage.mql] == [1, 1, 1, 1]
    assert [m.stage for m in second.test] == list(THRESHOLDS)


def test_without_a_won_and_a_lost_training_lead_there_is_no_baseline(history: Engine) -> None:
    report = backtest(history, split=T0 + timedelta(days=1, hours=12))  # trains on L1 and L2 only, both won
    assert report.train.leads == 2 and report.predictive_auc is None
    assert report.rule_sets[0].predictive == []


def test_the_default_evaluation_moment_is_the_latest_marketing_activity(history: Engine) -> None:
    store_events(history, "l1@corp.example", [("deal_won", T0 + timedelta(days=27, hours=20))])
    with session_scope(history) as session:
        assert latest_activity(session) == T0 + timedelta(days=27, hours=9)


def test_outcomes_from_the_crm_are_each_leads_latest_deal(history: Engine) -> None:
    store_events(
        history, "l1@corp.example", [("deal_lost", T0 + timedelta(days=3)), ("deal_won", T0 + timedelta(days=6))]
    )
    store_events(
        history, "l2@corp.example", [("deal_won", T0 + timedelta(days=3)), ("deal_lost", T0 + timedelta(days=7))]
    )
    with session_scope(history) as session:
        crm = outcomes_from_crm(session)
    assert crm.by_email == {
        "l1@corp.example": Outcome(OutcomeKind.won, T0 + timedelta(days=6)),
        "l2@corp.example": Outcome(OutcomeKind.lost, T0 + timedelta(days=7)),
    }


def test_bad_outcome_rows_are_skipped_and_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(
        "email,outcome,decided_at\n"
        " Anna@Corp.example ,WON,2026-12-01\n"
        "not-an-email,won,2026-12-01\n"
        "bo@corp.example,maybe,2026-12-01\n"
        "cy@corp.example,lost,next week\n"
        "di@corp.example,open,\n"
        "ed@corp.example,lost,2026-12-02T10:00:00Z,extra\n"
        "fi@corp.example,lost,2026-12-03T10:00:00+01:00\n",
        encoding="utf-8",
    )
    loaded = load_outcomes(path)
    assert loaded.by_email == {
        "anna@corp.example": Outcome(OutcomeKind.won, datetime(2026, 12, 1)),
        "di@corp.example": Outcome(OutcomeKind.open),
        "fi@corp.example": Outcome(OutcomeKind.lost, datetime(2026, 12, 3, 9, 0)),
    }
    assert loaded.problems == [
        f"{path}:3: not an email address: 'not-an-email'",
        f"{path}:4: outcome must be won, lost or open, got 'maybe'",
        f"{path}:5: decided_at is not an ISO 8601 date or time: 'next week'",
        f"{path}:7: more columns than the header",
    ]
    assert (loaded.count(OutcomeKind.won), loaded.count(OutcomeKind.lost), loaded.count(OutcomeKind.open)) == (1, 1, 1)


def test_an_outcomes_file_without_its_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text("mail,result\nanna@corp.example,won\n", encoding="utf-8")
    with pytest.raises(OutcomesError, match=r"outcomes.csv:1: the header needs the columns email,outcome"):
        load_outcomes(path)
    with pytest.raises(OutcomesError, match="file not found"):
        load_outcomes(tmp_path / "missing.csv")


def test_nothing_to_replay_is_an_error_that_says_so(engine: Engine) -> None:
    rules = [("views-v1", make_config())]
    with session_scope(engine) as session, pytest.raises(BacktestError, match="no activity to replay"):
        run_backtest(session=session, rule_sets=rules, outcomes=known_outcomes())
    store_history(engine)
    with session_scope(engine) as session, pytest.raises(BacktestError, match="no lead has activity on or before"):
        run_backtest(session=session, rule_sets=rules, outcomes=known_outcomes(), as_of=T0)
