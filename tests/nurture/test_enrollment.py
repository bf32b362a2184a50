"""Who gets into which nurture sequence, who leaves, and which steps get queued when (both backends)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, Lead, NurtureEnrollment, OutboxStatus, Stage
from leadflow.nurture.enrollment import enroll, exit_finished
from leadflow.nurture.steps import outbox_key, queue_due_steps
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
T0 = datetime(2026, 11, 2, 9, 0, 0)
DAY = timedelta(days=1)


def _config(sequences: list[dict[str, Any]] | None = None) -> WorkspaceConfig:
    """The example workspace config, optionally with other nurture sequences."""
    data = yaml.safe_load(EXAMPLE.read_text())
    if sequences is not None:
        data["nurture"] = {"sequences": sequences}
    return WorkspaceConfig.model_validate(data)


def _sequence(
    name: str, stages: list[str], exit_at: str = "mql", delays: tuple[float, ...] = (0,), **enroll: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "enroll": {"stages": stages, **enroll},
        "exit_at_stage": exit_at,
        "steps": [{"template": f"{name}/{i}", "subject": f"Step {i}", "delay_days": d} for i, d in enumerate(delays)],
    }


def _leads(engine: Engine, *specs: tuple[str, Stage] | tuple[str, Stage, dict[str, Any]]) -> dict[str, int]:
    """Insert leads (local part, stage[, extra fields]); returns {local part: id}."""
    rows = {}
    for spec in specs:
        name, stage, extra = (*spec, {}) if len(spec) == 2 else spec  # type: ignore[misc]
        rows[name] = make.lead(f"{name}@example.com", stage=stage, **extra)
    return dict(zip(rows, make.add(engine, *rows.values()), strict=True))


def _set(engine: Engine, lead_id: int, **values: Any) -> None:
    with session_scope(engine) as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        for key, value in values.items():
            setattr(lead, key, value)


def _enrollments(engine: Engine) -> dict[int, NurtureEnrollment]:
    """Every enrollment by lead id (tests here keep at most one per lead unless they say so)."""
    with Session(engine) as session:
        return {e.lead_id: e for e in session.scalars(select(NurtureEnrollment))}


def _all_enrollments(engine: Engine) -> list[tuple[int, str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(NurtureEnrollment.lead_id, NurtureEnrollment.sequence, NurtureEnrollment.status).order_by(
                NurtureEnrollment.lead_id, NurtureEnrollment.id
            )
        )
        return [(lead, seq, str(status)) for lead, seq, status in rows]


def _outbox(engine: Engine) -> list[EmailOutbox]:
    with Session(engine) as session:
        return list(session.scalars(select(EmailOutbox).order_by(EmailOutbox.id)))


def _run(engine: Engine, fn: Any, config: WorkspaceConfig, now: datetime) -> Any:
    with session_scope(engine) as session:
        return fn(session=session, config=config, now=now)


def _deliver(engine: Engine, at: datetime) -> None:
    """The mail server accepts every queued email at `at` (the send loop's mark, without a transport)."""
    with session_scope(engine) as session:
        for row in session.scalars(select(EmailOutbox).where(EmailOutbox.status == OutboxStatus.pending)):
            row.status, row.sent_at = OutboxStatus.sent, at


# --- enroll ------------------------------------------------------------------------------------


def test_enroll_takes_only_configured_stages_and_skips_opted_out_leads(engine: Engine) -> None:
    ids = _leads(
        engine,
        *((stage.value, stage) for stage in Stage),
        ("prospect-unsubscribed", Stage.prospect, {"unsubscribed_at": T0 - DAY}),
        ("hot-bounced", Stage.hot_prospect, {"bounced_at": T0 - DAY}),
    )
    config = _config()  # warm-up enrolls prospect and hot_prospect, recycled enrolls recycled leads

    assert _run(engine, enroll, config, T0) == Counter({"warm-up": 2, "recycled": 1})

    enrolled = _enrollments(engine)
    assert set(enrolled) == {ids["prospect"], ids["hot_prospect"], ids["recycled"]}
    for lead_id, enrollment in enrolled.items():
        assert enrollment.sequence == ("recycled" if lead_id == ids["recycled"] else "warm-up")
        assert enrollment.status == EnrollmentStatus.active
        assert enrollment.step == 0
        assert enrollment.enrolled_at == T0
        # warm-up's first step has delay_days 0; recycled leads get their first email a week later
        assert enrollment.next_due_at == (T0 + 7 * DAY if lead_id == ids["recycled"] else T0)
        assert enrollment.exited_at is None and enrollment.exit_reason is None


def test_enroll_is_idempotent(engine: Engine) -> None:
    _leads(engine, ("a", Stage.prospect), ("b", Stage.hot_prospect))
    config = _config()
    assert _run(engine, enroll, config, T0) == Counter({"warm-up": 2})
    before = _all_enrollments(engine)
    assert _run(engine, enroll, config, T0) == Counter({"warm-up": 0})
    assert _run(engine, enroll, config, T0 + DAY) == Counter({"warm-up": 0})
    assert _all_enrollments(engine) == before


def test_first_due_date_follows_the_first_step_delay(engine: Engine) -> None:
    ids = _leads(engine, ("a", Stage.prospect))
    config = _config([_sequence("slow", ["prospect"], delays=(2.5, 1))])
    _run(engine, enroll, config, T0)
    assert _enrollments(engine)[ids["a"]].next_due_at == T0 + timedelta(days=2.5)


def test_score_bounds_limit_who_enrolls(engine: Engine) -> None:
    ids = _leads(
        engine,
        ("low", Stage.prospect, {"score": 10}),
        ("mid", Stage.prospect, {"score": 40}),
        ("edge", Stage.prospect, {"score": 60}),
        ("high", Stage.prospect, {"score": 61}),
    )
    config = _config([_sequence("band", ["prospect"], min_score=40, max_score=60)])
    assert _run(engine, enroll, config, T0) == Counter({"band": 2})
    assert set(_enrollments(engine)) == {ids["mid"], ids["edge"]}


def test_a_lead_is_in_at_most_one_active_sequence_and_the_first_listed_wins(engine: Engine) -> None:
    ids = _leads(engine, ("p", Stage.prospect), ("h", Stage.hot_prospect))
    first = _sequence("first", ["prospect", "hot_prospect"])
    second = _sequence("second", ["prospect"])

    assert _run(engine, enroll, _config([first, second]), T0) == Counter({"first": 2, "second": 0})
    assert _all_enrollments(engine) == [(ids["p"], "first", "active"), (ids["h"], "first", "active")]
    # Running again (or with the order swapped later) adds no second active enrollment.
    assert _run(engine, enroll, _config([second, first]), T0) == Counter({"first": 0, "second": 0})
    assert _all_enrollments(engine) == [(ids["p"], "first", "active"), (ids["h"], "first", "active")]


def test_first_listed_wins_in_the_other_order_too(engine: Engine) -> None:
    ids = _leads(engine, ("p", Stage.prospect), ("h", Stage.hot_prospect))
    config = _config([_sequence("second", ["prospect"]), _sequence("first", ["prospect", "hot_prospect"])])
    assert _run(engine, enroll, config, T0) == Counter({"second": 1, "first": 1})
    assert _all_enrollments(engine) == [(ids["p"], "second", "active"), (ids["h"], "first", "active")]


def test_after_a_sequence_ends_the_lead_can_join_the_next_but_never_the_same_again(engine: Engine) -> None:
    ids = _leads(engine, ("p", Stage.prospect))
    config = _config([_sequence("first", ["prospect"]), _sequence("second", ["prospect"])])
    _run(engine, enroll, config, T0)
    # "first" has one step: queuing it completes the enrollment.
    assert _run(engine, queue_due_steps, config, T0) == 1
    assert _all_enrollments(engine) == [(ids["p"], "first", "completed")]

    assert _run(engine, enroll, config, T0 + DAY) == Counter({"first": 0, "second": 1})
    assert _all_enrollments(engine) == [(ids["p"], "first", "completed"), (ids["p"], "second", "active")]


def test_an_exited_lead_that_falls_back_is_not_enrolled_in_the_same_sequence_again(engine: Engine) -> None:
    ids = _leads(engine, ("p", Stage.prospect))
    config = _config()
    _run(engine, enroll, config, T0)
    _set(engine, ids["p"], stage=Stage.mql)
    assert _run(engine, exit_finished, config, T0 + DAY) == Counter({"reached mql": 1})
    _set(engine, ids["p"], stage=Stage.prospect)  # scores decayed, the lead is cold again
    assert _run(engine, enroll, config, T0 + 2 * DAY) == Counter({"warm-up": 0})
    assert _all_enrollments(engine) == [(ids["p"], "warm-up", "exited")]


# --- exit_finished -------------------------------------------------------------------------------


def test_exit_finished_ends_enrollments_with_the_reason(engine: Engine) -> None:
    names = ["stays", "warmer", "mql", "sql", "customer", "unsubscribed", "bounced", "disqualified"]
    ids = _leads(engine, *((n, Stage.prospect) for n in names))
    config = _config()
    assert _run(engine, enroll, config, T0) == Counter({"warm-up": len(names)})

    _set(engine, ids["warmer"], stage=Stage.hot_prospect)  # still nurtured
    _set(engine, ids["mql"], stage=Stage.mql)  # exit_at_stage
    _set(engine, ids["sql"], stage=Stage.sql)  # beyond it
    _set(engine, ids["customer"], stage=Stage.customer)
    _set(engine, ids["unsubscribed"], unsubscribed_at=T0 + DAY)
    _set(engine, ids["bounced"], bounced_at=T0 + DAY)
    _set(engine, ids["disqualified"], stage=Stage.disqualified)

    later = T0 + 2 * DAY
    assert _run(engine, exit_finished, config, later) == Counter(
        {"reached mql": 3, "unsubscribed": 1, "bounced": 1, "disqualified": 1}
    )
    enrolled = _enrollments(engine)
    expected = {
        "mql": "reached mql",
        "sql": "reached mql",
        "customer": "reached mql",
        "unsubscribed": "unsubscribed",
        "bounced": "bounced",
        "disqualified": "disqualified",
    }
    for name, reason in expected.items():
        e = enrolled[ids[name]]
        assert (e.status, e.exit_reason, e.exited_at, e.next_due_at) == (
            EnrollmentStatus.exited,
            reason,
            later,
            None,
        ), name
    for name in ("stays", "warmer"):
        e = enrolled[ids[name]]
        assert (e.status, e.exit_reason, e.exited_at) == (EnrollmentStatus.active, None, None), name
        assert e.next_due_at == T0

    # Nothing left to exit; exited leads get no more steps.
    assert _run(engine, exit_finished, config, later + DAY) == Counter()
    assert _run(engine, queue_due_steps, config, later) == 2
    assert {row.lead_id for row in _outbox(engine)} == {ids["stays"], ids["warmer"]}


def test_an_unsubscribed_lead_that_also_converted_exits_as_unsubscribed(engine: Engine) -> None:
    ids = _leads(engine, ("both", Stage.prospect))
    config = _config()
    _run(engine, enroll, config, T0)
    _set(engine, ids["both"], stage=Stage.mql, unsubscribed_at=T0)
    assert _run(engine, exit_finished, config, T0 + DAY) == Counter({"unsubscribed": 1})
    assert _enrollments(engine)[ids["both"]].exit_reason == "unsubscribed"


def test_each_sequence_exits_at_its_own_stage(engine: Engine) -> None:
    ids = _leads(engine, ("early", Stage.prospect), ("late", Stage.suspect))
    config = _config(
        [
            _sequence("intro", ["prospect"], exit_at="hot_prospect"),
            _sequence("awareness", ["suspect"], exit_at="mql"),
        ]
    )
    _run(engine, enroll, config, T0)
    _set(engine, ids["early"], stage=Stage.hot_prospect)
    _set(engine, ids["late"], stage=Stage.hot_prospect)
    assert _run(engine, exit_finished, config, T0 + DAY) == Counter({"reached hot_prospect": 1})
    enrolled = _enrollments(engine)
    assert enrolled[ids["early"]].status == EnrollmentStatus.exited
    assert enrolled[ids["late"]].status == EnrollmentStatus.active


def test_completed_enrollments_are_left_alone_by_exits(engine: Engine) -> None:
    ids = _leads(engine, ("done", Stage.prospect))
    config = _config([_sequence("one-shot", ["prospect"])])
    _run(engine, enroll, config, T0)
    _run(engine, queue_due_steps, config, T0)
    _set(engine, ids["done"], stage=Stage.mql, unsubscribed_at=T0 + DAY)
    assert _run(engine, exit_finished, config, T0 + 2 * DAY) == Counter()
    e = _enrollments(engine)[ids["done"]]
    assert (e.status, e.exit_reason, e.exited_at) == (EnrollmentStatus.completed, "completed", T0)


# --- queue_due_steps ----------------------------------------------------------------------------


def test_queue_due_steps_walks_the_sequence_once(engine: Engine) -> None:
    ids = _leads(engine, ("a", Stage.prospect), ("b", Stage.hot_prospect))
    config = _config([_sequence("warm-up", ["prospect", "hot_prospect"], delays=(0, 4, 7))])
    _run(engine, enroll, config, T0)
    enrollment = {lead: e.id for lead, e in _enrollments(engine).items()}

    # Step 0 is due at enrollment.
    assert _run(engine, queue_due_steps, config, T0) == 2
    rows = _outbox(engine)
    assert sorted(r.idempotency_key for r in rows) == sorted(outbox_key(enrollment[i], 0) for i in ids.values())
    for r in rows:
        assert r.idempotency_key == f"nurture:{r.enrollment_id}:0"
        assert (r.sequence, r.step, r.status, r.attempts) == ("warm-up", 0, OutboxStatus.pending, 0)
        assert r.next_attempt_at == T0 and r.created_at == T0
        assert r.enrollment_id == enrollment[r.lead_id]
        assert r.message_id is None and r.sent_at is None
    # Step 1 waits for step 0 to be delivered (issue 16: paced from sending, not queuing).
    for e in _enrollments(engine).values():
        assert (e.status, e.step, e.next_due_at) == (EnrollmentStatus.active, 1, None)
    assert _run(engine, queue_due_steps, config, T0 + 5 * DAY) == 0
    sent0 = T0 + timedelta(hours=2)
    _deliver(engine, sent0)

    # The flow runs again, and again before step 1 is due (four days after step 0 was sent): nothing new.
    assert _run(engine, queue_due_steps, config, sent0) == 0
    for e in _enrollments(engine).values():
        assert (e.status, e.step, e.next_due_at, e.waiting_since) == (
            EnrollmentStatus.active,
            1,
            sent0 + 4 * DAY,
            sent0,
        )
    assert _run(engine, queue_due_steps, config, sent0 + 4 * DAY - timedelta(seconds=1)) == 0
    assert len(_outbox(engine)) == 2

    # Step 1 becomes due four days after step 0 went out.
    assert _run(engine, queue_due_steps, config, sent0 + 4 * DAY) == 2
    assert _run(engine, queue_due_steps, config, sent0 + 4 * DAY) == 0
    sent1 = sent0 + 4 * DAY
    _deliver(engine, sent1)
    assert _run(engine, queue_due_steps, config, sent1) == 0
    for e in _enrollments(engine).values():
        assert (e.status, e.step, e.next_due_at) == (EnrollmentStatus.active, 2, sent1 + 7 * DAY)

    # The last step completes the enrollment.
    assert _run(engine, queue_due_steps, config, sent1 + 7 * DAY) == 2
    for e in _enrollments(engine).values():
        assert (e.status, e.next_due_at, e.exited_at, e.exit_reason) == (
            EnrollmentStatus.completed,
            None,
            sent1 + 7 * DAY,
            "completed",
        )
    assert _run(engine, queue_due_steps, config, T0 + 60 * DAY) == 0

    rows = _outbox(engine)
    assert len(rows) == 6
    assert Counter((r.lead_id, r.step) for r in rows) == Counter({(i, s): 1 for i in ids.values() for s in range(3)})
    assert len({r.idempotency_key for r in rows}) == 6
    assert {r.created_at for r in rows if r.step == 2} == {sent1 + 7 * DAY}


def test_after_downtime_steps_keep_their_spacing(engine: Engine) -> None:
    """A flow that did not run for a month sends one step, not the whole sequence at once."""
    ids = _leads(engine, ("a", Stage.prospect))
    config = _config()
    _run(engine, enroll, config, T0)
    back = T0 + 30 * DAY
    assert _run(engine, queue_due_steps, config, back) == 1
    assert _run(engine, queue_due_steps, config, back) == 0
    _deliver(engine, back)
    assert _run(engine, queue_due_steps, config, back) == 0
    assert _enrollments(engine)[ids["a"]].next_due_at == back + 4 * DAY
    assert [r.step for r in _outbox(engine)] == [0]


def test_steps_of_leads_enrolled_later_become_due_later(engine: Engine) -> None:
    ids = _leads(engine, ("early", Stage.prospect))
    config = _config([_sequence("slow", ["prospect"], delays=(1, 2))])
    _run(engine, enroll, config, T0)
    late = _leads(engine, ("late", Stage.prospect))
    _run(engine, enroll, config, T0 + DAY)

    assert _run(engine, queue_due_steps, config, T0) == 0
    assert _run(engine, queue_due_steps, config, T0 + DAY) == 1
    assert [r.lead_id for r in _outbox(engine)] == [ids["early"]]
    _deliver(engine, T0 + DAY)
    assert _run(engine, queue_due_steps, config, T0 + 2 * DAY) == 1
    assert [r.lead_id for r in _outbox(engine)] == [ids["early"], late["late"]]
    _deliver(engine, T0 + 2 * DAY)
    assert _run(engine, queue_due_steps, config, T0 + 3 * DAY) == 1  # early's step 1
    assert _run(engine, queue_due_steps, config, T0 + 4 * DAY) == 1  # late's step 1
    assert {str(e.status) for e in _enrollments(engine).values()} == {"completed"}


def test_queue_respects_the_limit_and_picks_the_longest_waiting_first(engine: Engine) -> None:
    ids = _leads(engine, ("first", Stage.prospect))
    config = _config()
    _run(engine, enroll, config, T0)
    more = _leads(engine, ("second", Stage.prospect), ("third", Stage.prospect))
    _run(engine, enroll, config, T0 + DAY)
    with session_scope(engine) as session:
        assert queue_due_steps(session=session, config=config, now=T0 + DAY, limit=1) == 1
    assert [r.lead_id for r in _outbox(engine)] == [ids["first"]]
    with session_scope(engine) as session:
        assert queue_due_steps(session=session, config=config, now=T0 + DAY, limit=5) == 2
    assert sorted(r.lead_id for r in _outbox(engine)[1:]) == sorted(more.values())


def test_enrollment_in_a_sequence_removed_from_config_is_ended_without_mail(engine: Engine) -> None:
    ids = _leads(engine, ("a", Stage.prospect))
    _run(engine, enroll, _config([_sequence("old", ["prospect"])]), T0)
    assert _run(engine, queue_due_steps, _config([_sequence("new", ["suspect"])]), T0) == 0
    e = _enrollments(engine)[ids["a"]]
    assert (e.status, e.exit_reason, e.next_due_at) == (EnrollmentStatus.exited, "sequence removed from config", None)
    assert _outbox(engine) == []


def test_nothing_is_queued_if_the_caller_rolls_back(engine: Engine) -> None:
    """Outbox row and enrollment advance share one transaction: both happen or neither."""
    ids = _leads(engine, ("a", Stage.prospect))
    config = _config()
    _run(engine, enroll, config, T0)
    with Session(engine) as session:
        assert queue_due_steps(session=session, config=config, now=T0) == 1
        session.rollback()
    assert _outbox(engine) == []
    assert _enrollments(engine)[ids["a"]].step == 0
    assert _run(engine, queue_due_steps, config, T0) == 1
