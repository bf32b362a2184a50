"""Sequence features on both backends: waits for events, branches, exits, re-enrollment, priorities, criteria."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.leads.config.workspace import ConfigError, WorkspaceConfig, load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, Lead, NurtureEnrollment, OutboxStatus, Stage
from leadflow.nurture.enrollment import enroll, exit_finished
from leadflow.nurture.steps import queue_due_steps
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
T0 = datetime(2026, 11, 2, 9, 0, 0)
DAY = timedelta(days=1)


def _config(*sequences: dict[str, Any], **nurture: Any) -> WorkspaceConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nurture"] = {**nurture, "sequences": list(sequences)}
    return WorkspaceConfig.model_validate(data)


def _step(id_: str, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "template": f"t/{id_}", "subject": id_, **extra}


def _seq(
    name: str, steps: list[dict[str, Any]], stages: tuple[str, ...] = ("prospect",), **extra: Any
) -> dict[str, Any]:
    return {"name": name, "enroll": {"stages": list(stages)}, "steps": steps, **extra}


def _lead(engine: Engine, name: str, stage: Stage = Stage.prospect, **fields: Any) -> int:
    return make.add(engine, make.lead(f"{name}@example.com", stage=stage, **fields))[0]


def _event(
    engine: Engine, lead_id: int, kind: str, at: datetime, target: str | None = None, sequence: str | None = None
) -> None:
    """An activity; an open or click of a sequence's email names it, as leadflow's links and pixel record it."""
    properties = {"sequence": sequence, "step": 0} if sequence else {}
    make.add(engine, make.activity(lead_id, kind, at, target=target, properties=properties))


def _run(engine: Engine, fn: Any, config: WorkspaceConfig, now: datetime) -> Any:
    with session_scope(engine) as session:
        return fn(session=session, config=config, now=now)


def _tick(engine: Engine, config: WorkspaceConfig, now: datetime) -> int:
    """One nurture run: exits, enrollments, due steps, and the mail server accepting them at once.

    Steps are paced from delivery, so each queued email is marked sent at `now` (no transport here)."""
    _run(engine, exit_finished, config, now)
    _run(engine, enroll, config, now)
    queued: int = _run(engine, queue_due_steps, config, now)
    with session_scope(engine) as session:
        session.execute(
            update(EmailOutbox)
            .where(EmailOutbox.status == OutboxStatus.pending)
            .values(status=OutboxStatus.sent, sent_at=now)
        )
    return queued


def _sent(engine: Engine, lead_id: int) -> list[str]:
    """The templates queued for a lead, in order."""
    with Session(engine) as session:
        rows = session.execute(
            select(EmailOutbox.sequence, EmailOutbox.step)
            .where(EmailOutbox.lead_id == lead_id)
            .order_by(EmailOutbox.id)
        ).all()
    return [f"{seq}:{step}" for seq, step in rows]


def _enrollments(engine: Engine, lead_id: int) -> list[tuple[str, int, str, str | None]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(NurtureEnrollment).where(NurtureEnrollment.lead_id == lead_id).order_by(NurtureEnrollment.id)
        )
        return [(e.sequence, e.cycle, str(e.status), e.exit_reason) for e in rows]


# --- waits for an event -------------------------------------------------------------------------

WAITING = _seq(
    "w",
    [_step("intro"), _step("follow-up", wait_for={"event": "clicked", "up_to_days": 5}), _step("last", delay_days=2)],
)


def test_a_step_waiting_for_a_click_goes_out_at_the_click(engine: Engine) -> None:
    config = _config(WAITING)
    lead = _lead(engine, "clicker")
    assert _tick(engine, config, T0) == 1  # intro
    _event(engine, lead, "email_click", T0 + timedelta(hours=30), "https://acme.example/x", "w")
    assert _tick(engine, config, T0 + DAY) == 0  # the click has not happened yet at this moment
    assert _tick(engine, config, T0 + 2 * DAY) == 1  # follow-up, three days before its limit
    assert _sent(engine, lead) == ["w:0", "w:1"]
    # The next fixed delay counts from when the follow-up went out.
    assert _tick(engine, config, T0 + 4 * DAY - timedelta(minutes=1)) == 0
    assert _tick(engine, config, T0 + 4 * DAY) == 1
    assert _sent(engine, lead) == ["w:0", "w:1", "w:2"]


def test_a_step_waiting_for_a_click_goes_out_at_the_limit_without_one(engine: Engine) -> None:
    config = _config(WAITING)
    lead = _lead(engine, "quiet")
    _tick(engine, config, T0)
    _event(engine, lead, "email_click", T0 - DAY, sequence="w")  # before the intro: does not count
    _event(engine, lead, "email_open", T0 + DAY, sequence="w")  # another kind of engagement: does not count
    assert _tick(engine, config, T0 + 5 * DAY - timedelta(minutes=1)) == 0
    assert _tick(engine, config, T0 + 5 * DAY) == 1
    assert _sent(engine, lead) == ["w:0", "w:1"]


def test_a_visit_wait_can_name_a_page(engine: Engine) -> None:
    config = _config(
        _seq("p", [_step("a"), _step("b", wait_for={"event": "visited", "page": "/pricing", "up_to_days": 9})])
    )
    lead = _lead(engine, "visitor")
    _tick(engine, config, T0)
    _event(engine, lead, "page_view", T0 + DAY, "https://acme.example/blog")
    assert _tick(engine, config, T0 + 2 * DAY) == 0
    _event(engine, lead, "page_view", T0 + 2 * DAY, "https://acme.example/pricing?plan=team")
    assert _tick(engine, config, T0 + 2 * DAY) == 1
    assert _enrollments(engine, lead) == [("p", 1, "completed", "completed")]


# --- branches -----------------------------------------------------------------------------------

BRANCHING = _seq(
    "b",
    [
        _step("intro"),
        _step("nudge", delay_days=3, branches=[{"if": "clicked", "goto": "demo"}, {"if": "opened", "goto": "story"}]),
        _step("story", delay_days=2),
        _step("demo", delay_days=2, branches=[{"if": "visited", "page": "/pricing", "goto": "end"}]),
        _step("bye", delay_days=2, branches=[{"if": "visited", "goto": "end"}]),
    ],
)


def test_branches_pick_the_step_by_engagement_and_skipped_steps_are_never_sent(engine: Engine) -> None:
    config = _config(BRANCHING)
    clicker, opener, silent = (_lead(engine, n) for n in ("clicker", "opener", "silent"))
    _tick(engine, config, T0)
    _event(engine, clicker, "email_open", T0 + DAY, sequence="b")
    _event(engine, clicker, "email_click", T0 + DAY, sequence="b")  # both: the first branch listed wins
    _event(engine, opener, "email_open", T0 + DAY, sequence="b")
    assert _tick(engine, config, T0 + 3 * DAY) == 3
    assert _sent(engine, clicker) == ["b:0", "b:3"]  # jumped to demo
    assert _sent(engine, opener) == ["b:0", "b:2"]  # jumped to story
    assert _sent(engine, silent) == ["b:0", "b:1"]  # the nudge itself
    for day in range(4, 12):
        _tick(engine, config, T0 + day * DAY)
    assert _sent(engine, clicker) == ["b:0", "b:3", "b:4"]
    assert _sent(engine, opener) == ["b:0", "b:2", "b:3", "b:4"]
    assert _sent(engine, silent) == ["b:0", "b:1", "b:2", "b:3", "b:4"]
    with Session(engine) as session:
        keys = list(session.scalars(select(EmailOutbox.idempotency_key)))
        e = {x.lead_id: x.id for x in session.scalars(select(NurtureEnrollment))}
    assert len(keys) == len(set(keys)) == 12
    assert f"nurture:{e[clicker]}:3" in keys and f"nurture:{e[clicker]}:1" not in keys


def test_a_branch_to_end_completes_the_enrollment_without_mail(engine: Engine) -> None:
    config = _config(BRANCHING)
    lead = _lead(engine, "buyer")
    _tick(engine, config, T0)
    _event(engine, lead, "email_click", T0 + DAY, sequence="b")
    _tick(engine, config, T0 + 3 * DAY)  # demo
    _event(engine, lead, "page_view", T0 + 4 * DAY, "/blog")
    assert _tick(engine, config, T0 + 5 * DAY) == 0  # bye is due, but the lead came back: the end
    assert _sent(engine, lead) == ["b:0", "b:3"]
    assert _enrollments(engine, lead) == [("b", 1, "completed", "completed")]


def test_a_branch_target_checks_its_own_branches(engine: Engine) -> None:
    """Clicked and visited pricing before the nudge: nudge → demo → end, in one run."""
    config = _config(BRANCHING)
    lead = _lead(engine, "fast")
    _tick(engine, config, T0)
    _event(engine, lead, "email_click", T0 + DAY, sequence="b")
    _event(engine, lead, "page_view", T0 + DAY, "/pricing")
    assert _tick(engine, config, T0 + 3 * DAY) == 0
    assert _sent(engine, lead) == ["b:0"]
    assert _enrollments(engine, lead) == [("b", 1, "completed", "completed")]


def test_opens_and_clicks_count_for_the_sequence_whose_email_it_was(engine: Engine) -> None:
    """A lead in two sequences clicks in one's email: only that one moves on; a click from elsewhere moves neither."""
    other = _seq("other", [_step("hello"), _step("follow-up", wait_for={"event": "clicked", "up_to_days": 5})])
    config = _config(BRANCHING, other, max_active_per_lead=2)
    lead, elsewhere = _lead(engine, "both"), _lead(engine, "elsewhere")
    assert _tick(engine, config, T0) == 4  # b:intro and other:hello, for each
    _event(engine, lead, "email_click", T0 + DAY, "https://acme.example/demo", sequence="other")
    _event(engine, elsewhere, "email_click", T0 + DAY, "https://newsletter.example/x")  # not one of ours
    assert _tick(engine, config, T0 + 2 * DAY) == 1  # the click wakes other's follow-up, for that lead only
    assert _sent(engine, lead) == ["b:0", "other:0", "other:1"]
    _tick(engine, config, T0 + 3 * DAY)  # b's nudge is due: its lead clicked, but not in a "b" email
    assert _sent(engine, lead)[-1] == "b:1" and _sent(engine, elsewhere)[-1] == "b:1"


# --- exits --------------------------------------------------------------------------------------

LONG = [_step("one"), _step("two", delay_days=5), _step("three", delay_days=5)]


@pytest.mark.parametrize(
    "kind,reason", [("email_reply", "replied"), ("sales_accepted", "sales took over")], ids=["reply", "sales"]
)
def test_a_reply_or_sales_taking_over_ends_the_sequence(engine: Engine, kind: str, reason: str) -> None:
    config = _config(_seq("s", LONG))
    lead, other = _lead(engine, "engaged"), _lead(engine, "other")
    _event(engine, other, kind, T0 - DAY)  # before enrolling: not a reason to leave
    _tick(engine, config, T0)
    _event(engine, lead, kind, T0 + DAY)
    assert _run(engine, exit_finished, config, T0 + 2 * DAY) == Counter({reason: 1})
    assert _tick(engine, config, T0 + 5 * DAY) == 1  # only the other lead's step two
    assert _sent(engine, lead) == ["s:0"]
    assert _enrollments(engine, lead) == [("s", 1, "exited", reason)]
    assert _enrollments(engine, other) == [("s", 1, "active", None)]


def test_exit_on_can_leave_replies_in_the_sequence(engine: Engine) -> None:
    config = _config(_seq("s", LONG, exit_on=["sales_took_over"]))
    lead = _lead(engine, "chatty")
    _tick(engine, config, T0)
    _event(engine, lead, "email_reply", T0 + DAY)
    assert _run(engine, exit_finished, config, T0 + 2 * DAY) == Counter()
    assert _tick(engine, config, T0 + 5 * DAY) == 1


def test_reaching_the_goal_stage_ends_the_sequence(engine: Engine) -> None:
    config = _config(_seq("s", LONG, exit_at_stage="sql"))
    lead = _lead(engine, "rising")
    _tick(engine, config, T0)
    with session_scope(engine) as session:
        session.get(Lead, lead).stage = Stage.mql  # type: ignore[union-attr]
    assert _run(engine, exit_finished, config, T0 + DAY) == Counter()  # MQL is not the goal here
    with session_scope(engine) as session:
        session.get(Lead, lead).stage = Stage.sql  # type: ignore[union-attr]
    assert _run(engine, exit_finished, config, T0 + DAY) == Counter({"reached sql": 1})


# --- re-enrollment ------------------------------------------------------------------------------


def test_reenrollment_waits_after_days_and_counts_max_times(engine: Engine) -> None:
    config = _config(_seq("r", [_step("only")], reenroll={"after_days": 30, "max_times": 2}))
    lead = _lead(engine, "again")
    assert _tick(engine, config, T0) == 1  # one step: completed at once
    assert _tick(engine, config, T0 + 29 * DAY) == 0
    assert _tick(engine, config, T0 + 30 * DAY) == 1
    assert _enrollments(engine, lead) == [("r", 1, "completed", "completed"), ("r", 2, "completed", "completed")]
    assert _tick(engine, config, T0 + 90 * DAY) == 0  # max_times reached
    with Session(engine) as session:
        keys = sorted(session.scalars(select(EmailOutbox.idempotency_key)))
    assert len(keys) == 2 and keys[0] != keys[1]  # a new enrollment, new keys


def test_reenrollment_counts_from_an_exit_too(engine: Engine) -> None:
    config = _config(_seq("r", LONG, reenroll={"after_days": 10}))
    lead = _lead(engine, "back")
    _tick(engine, config, T0)
    with session_scope(engine) as session:
        session.get(Lead, lead).stage = Stage.mql  # type: ignore[union-attr]
    _tick(engine, config, T0 + DAY)  # exits: reached mql
    with session_scope(engine) as session:
        session.get(Lead, lead).stage = Stage.prospect  # type: ignore[union-attr]
    assert _run(engine, enroll, config, T0 + 10 * DAY) == Counter({"r": 0})
    assert _run(engine, enroll, config, T0 + 11 * DAY) == Counter({"r": 1})
    assert [e[:3] for e in _enrollments(engine, lead)] == [("r", 1, "exited"), ("r", 2, "active")]


# --- priorities and one sequence at a time ------------------------------------------------------


def test_the_higher_priority_wins_whatever_the_order(engine: Engine) -> None:
    low = _seq("low", [_step("x")], stages=("prospect", "hot_prospect"))
    high = _seq("high", [_step("y")], stages=("hot_prospect",), priority=5)
    p, h = _lead(engine, "p"), _lead(engine, "h", Stage.hot_prospect)
    assert _run(engine, enroll, _config(low, high), T0) == Counter({"high": 1, "low": 1})
    assert [e[0] for e in _enrollments(engine, h)] == ["high"]
    assert [e[0] for e in _enrollments(engine, p)] == ["low"]


def test_a_lead_moves_up_to_a_higher_priority_sequence(engine: Engine) -> None:
    low = _seq("newsletter", LONG, stages=("prospect", "hot_prospect"))
    high = _seq("trial", LONG, stages=("hot_prospect",), priority=5)
    config = _config(low, high)
    lead = _lead(engine, "warming")
    _tick(engine, config, T0)
    with session_scope(engine) as session:
        session.get(Lead, lead).stage = Stage.hot_prospect  # type: ignore[union-attr]
    assert _tick(engine, config, T0 + DAY) == 1  # trial's first step
    assert _enrollments(engine, lead) == [
        ("newsletter", 1, "exited", "moved to trial"),
        ("trial", 1, "active", None),
    ]
    assert _sent(engine, lead) == ["newsletter:0", "trial:0"]


def test_max_active_per_lead_allows_several_sequences(engine: Engine) -> None:
    one, two = _seq("one", LONG), _seq("two", LONG, priority=3)
    lead = _lead(engine, "busy")
    assert _run(engine, enroll, _config(one, two, max_active_per_lead=2), T0) == Counter({"one": 1, "two": 1})
    assert sorted(e[:3] for e in _enrollments(engine, lead)) == [("one", 1, "active"), ("two", 1, "active")]
    assert _run(engine, enroll, _config(one, two, max_active_per_lead=2), T0 + DAY) == Counter({"one": 0, "two": 0})


# --- enrollment criteria ------------------------------------------------------------------------


def test_inactivity_and_fit_criteria(engine: Engine) -> None:
    config = _config(
        _seq(
            "quiet-marketers",
            [_step("x")],
            stages=("suspect", "prospect"),
        )
        | {
            "enroll": {
                "stages": ["suspect", "prospect"],
                "inactive_days": 30,
                "fit": {
                    "company_size": {"at_least": 50, "at_most": 5000},
                    "title": {"contains": "Market"},
                    "country": {"one_of": ["nl", "DE"]},
                },
            }
        }
    )
    base = {"company_size": 200, "title": "Head of Marketing", "country": "NL", "last_activity_at": T0 - 40 * DAY}
    ok = _lead(engine, "ok", **base)
    never_active = _lead(engine, "never", **{**base, "last_activity_at": None})
    rejected = [
        _lead(engine, "recent", **{**base, "last_activity_at": T0 - 10 * DAY}),
        _lead(engine, "small", **{**base, "company_size": 10}),
        _lead(engine, "unknown-size", **{**base, "company_size": None}),
        _lead(engine, "engineer", **{**base, "title": "Engineer"}),
        _lead(engine, "french", **{**base, "country": "FR"}),
        _lead(engine, "hot", Stage.hot_prospect, **base),
    ]
    assert _run(engine, enroll, config, T0) == Counter({"quiet-marketers": 2})
    assert _enrollments(engine, ok) and _enrollments(engine, never_active)
    assert not any(_enrollments(engine, r) for r in rejected)


# --- config validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step,message",
    [
        ({"branches": [{"if": "clicked", "goto": "a"}]}, "goes back; branches may only skip ahead"),
        ({"branches": [{"if": "clicked", "goto": "nowhere"}]}, "no step id of this sequence"),
        ({"delay_days": 2, "wait_for": {"event": "opened", "up_to_days": 3}}, "either delay_days or wait_for"),
        ({"branches": [{"if": "bought", "goto": "end"}]}, "'opened', 'clicked', 'visited' or 'replied'"),
        ({"id": "a"}, "id 'a' is used twice"),
    ],
    ids=["backwards", "unknown", "two-waits", "unknown-event", "same-id"],
)
def test_bad_sequences_are_reported_with_line_and_key(tmp_path: Path, step: dict[str, Any], message: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nurture"] = {"sequences": [_seq("s", [_step("a"), _step("b", **step)])]}
    path = tmp_path / "leadflow.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(message in p and "nurture.sequences[0]" in p and p.startswith("line ") for p in caught.value.problems), (
        caught.value.problems
    )


# --- set-based: the number of statements does not grow with the number of leads ----------------


def _statements(engine: Engine, config: WorkspaceConfig, now: datetime) -> int:
    from sqlalchemy import event

    count = 0

    def counting(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(engine, "before_cursor_execute", counting)
    try:
        _tick(engine, config, now)
    finally:
        event.remove(engine, "before_cursor_execute", counting)
    return count


def test_a_run_costs_the_same_statements_for_ten_leads_or_three_hundred(engine: Engine) -> None:
    config = _config(BRANCHING, _seq("other", LONG, stages=("hot_prospect",), priority=1))
    costs = []
    for n, start in ((10, T0), (300, T0 + 100 * DAY)):
        ids = make.add(engine, *(make.lead(f"n{n}-{i}@example.com", stage=Stage.prospect) for i in range(n)))
        run = [_statements(engine, config, start)]  # enroll and queue the intro
        for i, lead_id in enumerate(ids):  # a mix of engagement for the branches
            _event(engine, lead_id, ("email_click", "email_open", "page_view")[i % 3], start + DAY, sequence="b")
        run.append(_statements(engine, config, start + 3 * DAY))  # branches decide the second email
        costs.append(run)
        with session_scope(engine) as session:  # these leads convert and leave before the next group
            session.execute(update(Lead).where(Lead.id.in_(ids)).values(stage=Stage.mql))
        _tick(engine, config, start + 4 * DAY)
    assert costs[0] == costs[1], costs
