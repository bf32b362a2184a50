"""Stage moves a marketer or sales would notice, over stored activity: free-mail fit, disqualification,
BANT conditions, recycling (sales rejection, lost deals, decayed MQLs), customers, and the rule version."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from leadflow.leads.requalify.explain import explain_lead
from leadflow.leads.requalify.ruleset import needs_full_recompute, remember_ruleset
from tests.leads.scoring_helpers import (
    NOW,
    RUN_AT,
    make_config,
    moves,
    requalify,
    requalify_due,
    scores,
    stage,
    store,
    transitions,
    update_profile,
)

DAY = timedelta(days=1)


def test_free_mail_matches_free_mail_providers_or_company_domains(engine: Engine) -> None:
    config = make_config(
        fit=[
            {"name": "Free mail", "field": "email_domain", "free_mail": True, "points": -10},
            {"name": "Company domain", "field": "email_domain", "free_mail": False, "points": 5},
        ]
    )
    for email in ("anna@gmail.com", "bob@Hotmail.co.uk", "carla@acme-logistics.nl", "dirk@mail.gmail.com.example"):
        store(engine, email, ("page_view", "/"))
    requalify(engine, config)
    assert scores(engine, "anna@gmail.com")[0] == -10
    assert scores(engine, "bob@hotmail.co.uk")[0] == -10
    assert scores(engine, "carla@acme-logistics.nl")[0] == 5
    assert scores(engine, "dirk@mail.gmail.com.example")[0] == 5


COMPETITORS = {"when": [{"field": "email_domain", "one_of": ["rival.example", "other-rival.example"]}]}


def test_a_competitor_is_disqualified_with_the_reason_and_never_moves_again(engine: Engine) -> None:
    config = make_config(disqualify=COMPETITORS)
    store(engine, "spy@rival.example", ("demo_request", "/demo"), ("webinar", None), profile={"title": "CEO"})
    requalify(engine, config)
    assert moves(engine, "spy@rival.example") == [
        (Stage.suspect, Stage.disqualified, "disqualified: email_domain is one of rival.example, other-rival.example")
    ]

    store(engine, "spy@rival.example", ("contact_sales", None, NOW + DAY), ("deal_won", None, NOW + DAY))
    result = requalify(engine, config, now=NOW + 2 * DAY)
    assert result.moves == {}
    assert stage(engine, "spy@rival.example") == Stage.disqualified
    assert len(transitions(engine)) == 1


def test_sales_disqualifying_a_lead_disqualifies_it(engine: Engine) -> None:
    store(engine, "anna@corp.example", ("contact_sales", None))
    requalify(engine)
    assert stage(engine, "anna@corp.example") == Stage.sql

    store(engine, "anna@corp.example", ("sales_disqualified", None, NOW + DAY))
    requalify(engine, now=NOW + 2 * DAY)
    assert moves(engine, "anna@corp.example")[-1] == (
        Stage.sql,
        Stage.disqualified,
        f"disqualified by sales on {NOW + DAY:%Y-%m-%d}",
    )
    store(engine, "anna@corp.example", ("demo_request", None, NOW + 3 * DAY))
    requalify(engine, now=NOW + 4 * DAY)
    assert stage(engine, "anna@corp.example") == Stage.disqualified


# fit 20 (CEO) + 10 (software) + engagement 3 webinars (36) = 66: an MQL (the default SQL rule wants 80).
HIGH_SCORER = [("webinar", None)] * 3
CEO = {"title": "CEO", "industry": "software"}


def test_bant_conditions_hold_back_a_high_scorer_until_ingest_brings_the_missing_answers(engine: Engine) -> None:
    config = make_config(stages={"sql": {"min_score": 60, "bant": {"authority": "known", "budget": ["approved"]}}})
    store(engine, "anna@corp.example", *HIGH_SCORER, at=RUN_AT - 3 * DAY, profile=CEO)
    requalify(engine, config, now=RUN_AT)
    assert scores(engine, "anna@corp.example") == (30, 36, 66, Stage.mql)
    with session_scope(engine) as session:
        explanation = explain_lead(session=session, config=config, email="anna@corp.example", now=RUN_AT)
    assert explanation.next_stage == Stage.sql
    assert explanation.missing == "needs authority unknown, budget is unknown (needs approved)"

    update_profile(engine, "anna@corp.example", authority="VP Marketing", budget="pending")
    due, result = requalify_due(engine, config, now=RUN_AT + timedelta(hours=1))
    assert len(due) == 1 and result.moves == {}
    with session_scope(engine) as session:
        explanation = explain_lead(session=session, config=config, email="anna@corp.example", now=RUN_AT)
    assert explanation.missing == "needs budget is pending (needs approved)"

    update_profile(engine, "anna@corp.example", budget="Approved")
    due, result = requalify_due(engine, config, now=RUN_AT + timedelta(hours=2))
    assert len(due) == 1 and result.moves == {("mql", "sql"): 1}
    assert moves(engine, "anna@corp.example")[-1] == (
        Stage.mql,
        Stage.sql,
        "score 66 ≥ 60 and authority known and budget Approved",
    )


def test_min_bant_known_counts_the_known_bant_fields(engine: Engine) -> None:
    config = make_config(stages={"sql": {"min_score": 60, "min_bant_known": 3}})
    store(engine, "two@corp.example", *HIGH_SCORER, profile={**CEO, "budget": "50k", "need": "scoring"})
    store(engine, "three@corp.example", *HIGH_SCORER, profile={**CEO, "budget": "50k", "need": "x", "timing": "Q1"})
    requalify(engine, config)
    assert stage(engine, "two@corp.example") == Stage.mql
    assert moves(engine, "three@corp.example") == [(Stage.suspect, Stage.sql, "score 66 ≥ 60 and BANT 3/4 known")]
    with session_scope(engine) as session:
        explanation = explain_lead(session=session, config=config, email="two@corp.example", now=NOW)
    assert explanation.missing == "needs BANT 2/4 known (needs 3)"


def test_a_sales_rejection_or_lost_deal_after_the_lead_became_an_sql_recycles_it(engine: Engine) -> None:
    for email in ("rejected", "lost", "rejected-before", "lost-before"):
        store(engine, f"{email}@corp.example", ("demo_request", "/demo"))
    store(engine, "rejected-before@corp.example", ("sales_rejected", None, NOW - 5 * DAY))
    store(engine, "lost-before@corp.example", ("deal_lost", None, NOW - 5 * DAY))
    requalify(engine)
    assert {stage(engine, f"{e}@corp.example") for e in ("rejected", "lost", "rejected-before", "lost-before")} == {
        Stage.sql
    }

    store(engine, "rejected@corp.example", ("sales_rejected", None, NOW + DAY))
    store(engine, "lost@corp.example", ("deal_lost", None, NOW + DAY))
    result = requalify(engine, now=NOW + 2 * DAY)

    assert result.moves == {("sql", "recycled"): 2}
    assert moves(engine, "rejected@corp.example")[-1] == (
        Stage.sql,
        Stage.recycled,
        f"rejected by sales on {NOW + DAY:%Y-%m-%d}",
    )
    assert moves(engine, "lost@corp.example")[-1] == (Stage.sql, Stage.recycled, f"deal lost on {NOW + DAY:%Y-%m-%d}")
    assert stage(engine, "rejected-before@corp.example") == Stage.sql  # sales said no before it was an SQL
    assert stage(engine, "lost-before@corp.example") == Stage.sql


DECAYING = make_config(half_life_days=30, recycle={"mql_below_score": 45})


def test_an_mql_whose_score_decays_below_the_floor_is_recycled(engine: Engine) -> None:
    store(engine, "anna@corp.example", *[("webinar", None, NOW)] * 3, profile=CEO)
    requalify(engine, DECAYING)
    assert scores(engine, "anna@corp.example")[3] == Stage.mql

    requalify(engine, DECAYING, now=NOW + 30 * DAY)  # 30 + 36/2 = 48: still above the floor
    assert stage(engine, "anna@corp.example") == Stage.mql
    requalify(engine, DECAYING, now=NOW + 60 * DAY)  # 30 + 36/4 = 39
    assert moves(engine, "anna@corp.example")[-1] == (
        Stage.mql,
        Stage.recycled,
        "score 39 fell below the MQL floor 45",
    )


def test_a_recycled_lead_qualifies_again_on_new_activity_only(engine: Engine) -> None:
    email = "anna@corp.example"
    store(engine, email, ("demo_request", "/demo"), *HIGH_SCORER, profile=CEO)
    requalify(engine)
    store(engine, email, ("sales_rejected", None, NOW + DAY))
    requalify(engine, now=NOW + 2 * DAY)
    assert stage(engine, email) == Stage.recycled

    # Nothing new: the old demo request and webinars do not bring it back, however often it is rescored.
    requalify(engine, now=NOW + 3 * DAY)
    requalify(engine, now=NOW + 4 * DAY)
    assert stage(engine, email) == Stage.recycled

    # New activity after recycling counts, on top of who the lead is (fit 30).
    store(engine, email, ("webinar", None, NOW + 5 * DAY))
    requalify(engine, now=NOW + 5 * DAY)
    assert moves(engine, email)[-1] == (Stage.recycled, Stage.hot_prospect, "score 42 ≥ 30")
    # ... and the old activity still does not: no way back to sales on the request they rejected.
    requalify(engine, now=NOW + 6 * DAY)
    assert stage(engine, email) == Stage.hot_prospect

    store(engine, email, ("contact_sales", None, NOW + 7 * DAY))
    requalify(engine, now=NOW + 7 * DAY)
    assert moves(engine, email)[-1] == (Stage.hot_prospect, Stage.sql, "hand raise: contact_sales")


def test_a_won_deal_makes_a_customer_from_any_stage_and_customers_never_move(engine: Engine) -> None:
    store(engine, "suspect@corp.example", ("page_view", "/"))
    store(engine, "mql@corp.example", *HIGH_SCORER, profile=CEO)
    store(engine, "sql@corp.example", ("demo_request", "/demo"))
    store(engine, "recycled@corp.example", ("demo_request", "/demo"), ("sales_rejected", None, NOW + DAY))
    requalify(engine)
    requalify(engine, now=NOW + 2 * DAY)
    assert [stage(engine, f"{s}@corp.example") for s in ("suspect", "mql", "sql", "recycled")] == [
        Stage.suspect,
        Stage.mql,
        Stage.sql,
        Stage.recycled,
    ]

    for s in ("suspect", "mql", "sql", "recycled"):
        store(engine, f"{s}@corp.example", ("deal_won", None, NOW + 3 * DAY))
    result = requalify(engine, now=NOW + 3 * DAY)
    assert result.moves == {(s, "customer"): 1 for s in ("suspect", "mql", "sql", "recycled")}
    assert moves(engine, "sql@corp.example")[-1] == (Stage.sql, Stage.customer, f"deal won on {NOW + 3 * DAY:%Y-%m-%d}")

    for s in ("suspect", "mql", "sql", "recycled"):
        store(engine, f"{s}@corp.example", ("sales_rejected", None, NOW + 4 * DAY), ("deal_lost", None, NOW + 4 * DAY))
    store(engine, "mql@corp.example", ("sales_disqualified", None, NOW + 4 * DAY))
    assert requalify(engine, now=NOW + 200 * DAY).moves == {}


def test_moves_carry_the_rule_version_and_a_changed_rule_set_needs_a_full_recompute(engine: Engine) -> None:
    store(engine, "anna@corp.example", ("demo_request", "/demo"))
    config = make_config(version="2026-11")
    requalify(engine, config)
    assert [t.ruleset_version for t in transitions(engine)] == ["2026-11"]

    edited = make_config(version="2026-11", half_life_days=45)  # the rules changed, the version did not
    bumped = make_config(version="2026-12")
    with session_scope(engine) as session:
        assert needs_full_recompute(session, config)  # never remembered
        remember_ruleset(session, config, NOW)
    with session_scope(engine) as session:
        assert not needs_full_recompute(session, config)
        assert needs_full_recompute(session, edited)
        assert needs_full_recompute(session, bumped)
        remember_ruleset(session, edited, NOW)
    with session_scope(engine) as session:
        assert not needs_full_recompute(session, edited)
        assert needs_full_recompute(session, config)
