"""Shared work without doing any of it twice: requalify rounds and shard claims, on SQLite and PostgreSQL.

Leases: tests/leads/test_leases.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from leadflow.leads.db.engine import make_engine, upgrade
from leadflow.leads.db.models import Lead, ShardStatus, StageTransition, WorkRound, WorkShard, utcnow
from leadflow.leads.requalify.rounds import JOB, plan_round, remember_full_round, score_shard
from leadflow.leads.requalify.ruleset import needs_full_recompute
from leadflow.leads.work.claims import (
    claim_shard,
    close_round,
    finish_shard,
    open_round,
    round_totals,
)
from tests import factories as make
from tests.leads.scoring_helpers import CONFIG, NOW, store


def _leads(engine: Engine, n: int) -> None:
    """n leads, all CTOs (prospects by fit alone); every third also views pricing twice and attends a webinar."""
    for i in range(n):
        events = [("page_view", "/pricing"), ("page_view", "/pricing"), ("webinar", None)] if i % 3 == 0 else []
        store(engine, f"lead{i}@example.com", ("page_view", "/blog"), *events, profile={"title": "CTO"})


def _plan(shard_size: int):  # type: ignore[no-untyped-def]
    return lambda session: plan_round(session, CONFIG, now=NOW, shard_size=shard_size)


def _work(engine: Engine, worker: str, shard_size: int, start: threading.Barrier | None = None) -> list[int]:
    """What one worker does in a requalify run: join or plan, claim until none is left, close."""
    if start is not None:
        start.wait()
    run = open_round(engine, job=JOB, worker=worker, plan=_plan(shard_size))
    done = []
    while (shard := claim_shard(engine, round_id=run.id, worker=worker)) is not None:
        if score_shard(engine, CONFIG, shard, now=run.as_of, worker=worker, run_id=worker) is not None:
            done.append(shard.seq)
    close_round(engine, round_id=run.id, worker=worker, on_close=remember_full_round(CONFIG, run.as_of))
    return done


def test_two_workers_share_one_round_and_score_every_lead_once(engine: Engine) -> None:
    _leads(engine, 60)
    start, results = threading.Barrier(2), {}

    def worker(name: str) -> None:
        results[name] = _work(engine, name, 6, start)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    with Session(engine) as session:
        rounds = session.execute(select(WorkRound)).scalars().all()
        assert len(rounds) == 1 and rounds[0].open_job is None and rounds[0].closed_by in ("a", "b")
        shards = session.execute(select(WorkShard)).scalars().all()
        moves = Counter(session.execute(select(StageTransition.lead_id, StageTransition.to_stage)).all())
        moved_leads = session.execute(select(func.count(func.distinct(StageTransition.lead_id)))).scalar_one()
        scored = session.execute(select(func.count()).select_from(Lead).where(Lead.scored_at.is_not(None))).scalar_one()
        totals = round_totals(session, rounds[0].id)
        assert not needs_full_recompute(session, CONFIG)  # the closer stored the rule set
    assert len(shards) == 10 and all(s.status == ShardStatus.done for s in shards)
    assert sorted(results["a"] + results["b"]) == list(range(10))  # every shard by exactly one worker
    assert scored == 60 and moved_leads == 60
    assert max(moves.values()) == 1  # no stage transition twice
    assert totals.done == 10 and totals.leads == 60 and totals.changes == sum(moves.values())


def test_a_second_run_after_the_round_closed_plans_a_new_one_with_only_what_is_due(engine: Engine) -> None:
    _leads(engine, 12)
    assert _work(engine, "a", 5) == [0, 1, 2]
    with Session(engine) as session:
        plan = plan_round(session, CONFIG, now=NOW, shard_size=5)
    assert plan.mode == "incremental" and plan.shards == []  # nothing due: no round is opened
    assert _work(engine, "b", 5) == []
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(WorkRound)).scalar_one() == 1


def test_a_dead_workers_shard_is_taken_over_after_its_lease_and_its_late_finish_is_refused(engine: Engine) -> None:
    _leads(engine, 9)
    run = open_round(engine, job=JOB, worker="a", plan=_plan(3))
    first = claim_shard(engine, round_id=run.id, worker="a")
    assert first is not None and first.seq == 0
    second = claim_shard(engine, round_id=run.id, worker="b")
    assert second is not None and second.seq == 1  # a holds shard 0
    assert close_round(engine, round_id=run.id, worker="b") is None  # shards still out: the round stays open

    later = lambda: utcnow() + timedelta(minutes=16)  # noqa: E731  (a's lease has run out)
    taken_over = claim_shard(engine, round_id=run.id, worker="b", clock=later)
    assert taken_over is not None and taken_over.seq == 0 and taken_over.attempts == 2
    with Session(engine) as session:
        assert not finish_shard(session, first, worker="a")  # a woke up: its claim is gone
        session.rollback()
    for shard in (taken_over, second, claim_shard(engine, round_id=run.id, worker="b")):
        assert score_shard(engine, CONFIG, shard, now=run.as_of, worker="b", run_id="b") is not None
    assert claim_shard(engine, round_id=run.id, worker="b") is None
    assert close_round(engine, round_id=run.id, worker="b") is True
    assert close_round(engine, round_id=run.id, worker="a") is False  # closed once
    with Session(engine) as session:
        runs = dict(
            session.execute(select(StageTransition.run_id, func.count()).group_by(StageTransition.run_id)).all()
        )
    assert set(runs) == {"b"}


@pytest.mark.postgres
def test_on_postgresql_a_shard_being_scored_is_skipped_not_waited_for(postgres_url: str) -> None:
    """SKIP LOCKED: while a's transaction scores shard 0 (its lease already out), b claims shard 1 at once."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        _leads(engine, 6)
        run = open_round(engine, job=JOB, worker="a", plan=_plan(3))
        held = claim_shard(engine, round_id=run.id, worker="a")
        later = lambda: utcnow() + timedelta(minutes=16)  # noqa: E731
        with Session(engine) as scoring:
            assert finish_shard(scoring, held, worker="a")  # a's transaction holds shard 0's row
            other = claim_shard(engine, round_id=run.id, worker="b", clock=later)
            assert other is not None and other.seq == 1
            scoring.commit()
        assert claim_shard(engine, round_id=run.id, worker="b", clock=later) is None  # shard 0 is done now
    finally:
        engine.dispose()


def test_plan_for_a_million_leads_is_twenty_shards_and_due_leads_come_in_lists(engine: Engine) -> None:
    make.add(engine, make.lead("first@example.com", id=1), make.lead("last@example.com", id=1_000_000))
    with Session(engine) as session:
        plan = plan_round(session, CONFIG, now=NOW, shard_size=50_000)
    assert plan.mode == "full" and len(plan.shards) == 20
    assert (plan.shards[0].lo, plan.shards[-1].hi) == (1, 1_000_000)
    assert all(s.size == 50_000 and s.ids is None for s in plan.shards)
