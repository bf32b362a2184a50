"""Time in the score, over stored activity: engagement decays by age, bursts count within a sliding window,
long silence costs points, and a run as of some moment ignores what happened after it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from tests import factories as make
from tests.leads.scoring_helpers import NOW, PRICING_BURST, make_config, requalify, scores, stage, store

DAY = timedelta(days=1)
DECAYING = make_config(
    half_life_days=30,
    engagement=[
        {"name": "Webinar", "activity": "webinar", "points": 12},
        {"name": "Pricing", "activity": "page_view", "target_contains": "/pricing", "points": 8, "cap": 24},
        {"name": "Newsletter", "activity": "newsletter_signup", "points": 5, "decays": False},
        {"name": "Bounced", "activity": "email_bounce", "points": -15, "decays": False},
    ],
)


def engagement(engine: Engine, email: str) -> float:
    return scores(engine, email)[1]


def test_engagement_halves_every_half_life_unless_the_rule_does_not_decay(engine: Engine) -> None:
    store(engine, "fresh@corp.example", ("webinar", None, NOW))
    store(engine, "month@corp.example", ("webinar", None, NOW - 30 * DAY))
    store(engine, "two-months@corp.example", ("webinar", None, NOW - 60 * DAY))
    store(engine, "signed-up@corp.example", ("newsletter_signup", None, NOW - 60 * DAY))
    store(engine, "bounced@corp.example", ("email_bounce", None, NOW - 90 * DAY))
    store(engine, "both@corp.example", ("webinar", None, NOW - 30 * DAY), ("newsletter_signup", None, NOW - 30 * DAY))

    requalify(engine, DECAYING)

    assert engagement(engine, "fresh@corp.example") == 12
    assert engagement(engine, "month@corp.example") == 6  # one half-life old: half
    assert engagement(engine, "two-months@corp.example") == 3  # two half-lives: a quarter
    assert engagement(engine, "signed-up@corp.example") == 5  # decays: false
    assert engagement(engine, "bounced@corp.example") == -15  # a non-decaying penalty stays whole
    assert engagement(engine, "both@corp.example") == 6 + 5


def test_a_cap_limits_the_decayed_sum_not_the_raw_count(engine: Engine) -> None:
    store(engine, "now@corp.example", *[("page_view", "/pricing", NOW - timedelta(hours=1))] * 5)
    store(engine, "month-ago@corp.example", *[("page_view", "/pricing", NOW - 30 * DAY)] * 5)
    store(engine, "many-month-ago@corp.example", *[("page_view", "/pricing", NOW - 30 * DAY)] * 8)

    requalify(engine, DECAYING)

    assert engagement(engine, "now@corp.example") == 24  # 5 × 8 = 40, capped
    assert engagement(engine, "month-ago@corp.example") == 20  # 5 × 8 × ½ = 20: under the cap once decayed
    assert engagement(engine, "many-month-ago@corp.example") == 24  # 8 × 8 × ½ = 32, capped


def test_without_a_half_life_nothing_decays(engine: Engine) -> None:
    config = make_config(engagement=DECAYING.scoring.model_dump()["engagement"])
    assert config.scoring.half_life_days is None
    store(engine, "old@corp.example", ("webinar", None, NOW - 60 * DAY), ("webinar", None, NOW - 365 * DAY))
    store(engine, "pricing@corp.example", *[("page_view", "/pricing", NOW - 90 * DAY)] * 5)
    requalify(engine, config)
    assert engagement(engine, "old@corp.example") == 24
    assert engagement(engine, "pricing@corp.example") == 24


def test_activity_after_now_is_ignored_so_a_run_as_of_a_past_moment_replays_it(engine: Engine) -> None:
    store(
        engine,
        "anna@corp.example",
        ("webinar", None, NOW - 30 * DAY),
        ("webinar", None, NOW + DAY),
        ("demo_request", "/demo", NOW + DAY),
        profile={"title": "CEO"},
    )

    requalify(engine, DECAYING)
    assert scores(engine, "anna@corp.example") == (20, 6, 26, Stage.prospect)  # as it stood on NOW

    requalify(engine, DECAYING, now=NOW + 2 * DAY)
    assert stage(engine, "anna@corp.example") == Stage.sql  # the demo request has happened by then


FREQUENCY = make_config(engagement=[], frequency=[PRICING_BURST])


def test_a_burst_within_the_window_gives_its_points_once_and_the_window_slides(engine: Engine) -> None:
    store(engine, "burst@corp.example", *[("page_view", "/pricing", NOW - d * DAY) for d in (1, 2, 3)])
    store(engine, "busy@corp.example", *[("page_view", "/pricing", NOW - d * DAY) for d in (1, 2, 3, 4, 5, 6)])
    store(engine, "spread@corp.example", *[("page_view", "/pricing", NOW - d * DAY) for d in (1, 10, 20)])
    store(engine, "blog@corp.example", *[("page_view", "/blog", NOW - d * DAY) for d in (1, 2, 3)])

    requalify(engine, FREQUENCY)
    assert engagement(engine, "burst@corp.example") == 15
    assert engagement(engine, "busy@corp.example") == 15  # once, however many views
    assert engagement(engine, "spread@corp.example") == 0  # three views over three weeks
    assert engagement(engine, "blog@corp.example") == 0

    requalify(engine, FREQUENCY, now=NOW + 4 * DAY - timedelta(hours=1))
    assert engagement(engine, "burst@corp.example") == 15  # the oldest view is almost 7 days old
    requalify(engine, FREQUENCY, now=NOW + 8 * DAY)
    assert engagement(engine, "burst@corp.example") == 0  # the same lead a week later: the burst is over


INACTIVITY = make_config(engagement=[], inactivity=[{"name": "Quiet for 60 days", "days": 60, "points": -10}])


def test_inactivity_counts_from_the_last_activity_or_creation_once_the_days_have_passed(engine: Engine) -> None:
    store(engine, "quiet-59@corp.example", ("page_view", "/", NOW - 59 * DAY))
    store(engine, "quiet-60@corp.example", ("page_view", "/", NOW - 60 * DAY), ("page_view", "/", NOW - 90 * DAY))
    with session_scope(engine) as session:  # imported leads that never did anything
        session.add(make.lead("created-61@corp.example", created_at=NOW - 61 * DAY))
        session.add(make.lead("created-10@corp.example", created_at=NOW - 10 * DAY))

    requalify(engine, INACTIVITY)
    assert engagement(engine, "quiet-59@corp.example") == 0
    assert engagement(engine, "quiet-60@corp.example") == -10
    assert engagement(engine, "created-61@corp.example") == -10
    assert engagement(engine, "created-10@corp.example") == 0

    store(engine, "quiet-60@corp.example", ("page_view", "/", NOW + DAY))
    requalify(engine, INACTIVITY, now=NOW + DAY)
    assert engagement(engine, "quiet-59@corp.example") == -10  # a day later it has been quiet for 60
    assert engagement(engine, "quiet-60@corp.example") == 0  # active again
