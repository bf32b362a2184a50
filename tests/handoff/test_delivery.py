"""Handoff delivery against a real receiver that verifies Standard Webhooks signatures and dedupes on webhook-id.

The receiver answers in a scripted order (500, 429 with Retry-After, a hang past our timeout, 200),
on SQLite and PostgreSQL: backoff, Retry-After, dead letters, re-drives and the exactly-once effect.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from leadflow.connectors.errors import FatalHandoffError
from leadflow.connectors.handoff import WebhookSink
from leadflow.handoff.deadletters import dead_counts, redrive
from leadflow.handoff.outbox import HandoffReport, deliver_pending
from leadflow.leads.config.assignment import DeadLetterConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import HandoffOutbox, OutboxStatus
from tests.connectors.handoff_payloads import payload
from tests.handoff.helpers import T0, add_sql, config, outbox
from tests.handoff.test_assignment import run_queue
from tests.peers import SECRET, SLOW, ServerState, WebhookServer

DEST = "file"  # the destination name the rows were queued under (run_queue)


def effects(state: ServerState) -> set[str]:
    """What a receiver that dedupes on webhook-id has acted on: each verified id once."""
    return {r.headers["webhook-id"] for r in state.requests if isinstance(r.verified, dict)}


def deliver(engine: Engine, url: str, at: datetime, **kwargs: Any) -> HandoffReport:
    with WebhookSink(url, SECRET, allow_private=True, timeout=0.5) as sink:
        return deliver_pending(engine=engine, sink=sink, destination=DEST, now=at, **kwargs)


def the_row(engine: Engine) -> HandoffOutbox:
    [row] = outbox(engine)
    return row


def test_scripted_failures_end_in_one_effect(engine: Engine, webhook_receiver: tuple[ServerState, str]) -> None:
    state, url = webhook_receiver
    add_sql(engine, "lead@nl.example")
    run_queue(engine, config())
    state.script.extend([(500, {}), (429, {"Retry-After": "600"}), SLOW, (200, {})])

    assert deliver(engine, url, T0).retried == 1  # 500
    row = the_row(engine)
    assert row.attempts == 1 and "500" in (row.last_error or "")
    assert T0 + timedelta(seconds=24) <= row.next_attempt_at <= T0 + timedelta(seconds=36)  # 30 s ± 20 %

    at = T0 + timedelta(minutes=1)
    assert deliver(engine, url, at).retried == 1  # 429: the backoff would be ~60 s, Retry-After says 600
    assert the_row(engine).next_attempt_at >= at + timedelta(seconds=600)

    assert deliver(engine, url, at + timedelta(minutes=5)) == HandoffReport()  # not due yet: nothing is sent
    assert len(state.requests) == 2

    at = T0 + timedelta(minutes=12)
    assert deliver(engine, url, at).retried == 1  # the receiver took it but answered too late
    row = the_row(engine)
    assert "timed out" in (row.last_error or "") and row.attempts == 3
    assert at + timedelta(seconds=96) <= row.next_attempt_at <= at + timedelta(seconds=144)  # 120 s ± 20 %
    state.release.set()

    report = deliver(engine, url, T0 + timedelta(minutes=20))
    assert report.delivered == 1 and report.by_owner == {"anna": 1}
    row = the_row(engine)
    assert row.status == OutboxStatus.sent and row.attempts == 4 and row.last_error is None

    assert len(state.requests) == 4 and all(isinstance(r.verified, dict) for r in state.requests)
    assert effects(state) == {row.idempotency_key}  # four deliveries, one effect
    assert state.requests[-1].verified["owner"]["id"] == "anna"

    assert deliver(engine, url, T0 + timedelta(days=2)) == HandoffReport()  # done is done
    assert len(state.requests) == 4


def test_dead_letter_after_attempts_then_retry(engine: Engine, webhook_receiver: tuple[ServerState, str]) -> None:
    state, url = webhook_receiver
    add_sql(engine, "lead@nl.example")
    run_queue(engine, config())
    state.script.extend([(503, {})] * 3)
    horizon = DeadLetterConfig(attempts=3, hours=None)
    reports = [deliver(engine, url, T0 + timedelta(hours=h), dead_letter=horizon) for h in range(3)]
    assert [(r.retried, r.dead) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    assert the_row(engine).status == OutboxStatus.dead
    assert deliver(engine, url, T0 + timedelta(days=1), dead_letter=horizon) == HandoffReport()
    with Session(engine) as session:
        assert dead_counts(session) == {DEST: 1}

    with session_scope(engine) as session:
        assert redrive(session, now=T0 + timedelta(days=1), destination="elsewhere") == 0
        assert redrive(session, now=T0 + timedelta(days=1), ids=[the_row(engine).id]) == 1  # type: ignore[list-item]
    row = the_row(engine)
    assert (row.status, row.attempts, row.requeued_at) == (OutboxStatus.pending, 0, T0 + timedelta(days=1))
    assert row.next_attempt_at == row.created_at
    assert deliver(engine, url, T0 + timedelta(days=1), dead_letter=horizon).delivered == 1
    assert len(state.requests) == 4 and effects(state) == {row.idempotency_key}  # the same webhook-id throughout


def test_dead_letter_after_hours_counts_from_queueing_or_retry(
    engine: Engine, webhook_receiver: tuple[ServerState, str]
) -> None:
    state, url = webhook_receiver
    add_sql(engine, "lead@nl.example")
    add_sql(engine, "throttled@nl.example")
    run_queue(engine, config())
    horizon = DeadLetterConfig(attempts=100, hours=2)
    state.script.extend([(503, {}), (503, {})])
    assert deliver(engine, url, T0, dead_letter=horizon).retried == 2
    # 3 h after queueing: one more failure is past the horizon, and so is a Retry-After beyond it.
    state.script.extend([(503, {}), (429, {"Retry-After": "7200"})])
    with session_scope(engine) as session:  # the second row was re-driven an hour ago: its clock restarted
        session.get(HandoffOutbox, outbox(engine)[1].id).requeued_at = T0 + timedelta(hours=2)  # type: ignore[union-attr]
    report = deliver(engine, url, T0 + timedelta(hours=3), dead_letter=horizon)
    assert (report.dead, report.retried) == (2, 0)  # first: past 2 h; second: Retry-After lands past its horizon
    assert [r.status for r in outbox(engine)] == [OutboxStatus.dead, OutboxStatus.dead]


def test_gone_stops_the_batch_and_leaves_rows_waiting(
    engine: Engine, webhook_receiver: tuple[ServerState, str]
) -> None:
    state, url = webhook_receiver
    for n in range(3):
        add_sql(engine, f"l{n}@nl.example")
    run_queue(engine, config())
    state.script.append((410, {}))
    report = deliver(engine, url, T0)
    assert report.gone and "410" in report.gone and report.delivered == report.dead == 0
    assert len(state.requests) == 1  # the other two were not tried
    assert [(r.status, r.attempts) for r in outbox(engine)] == [(OutboxStatus.pending, 0)] * 3


def test_redirects_are_not_followed(engine: Engine, webhook_receiver: tuple[ServerState, str]) -> None:
    """A receiver cannot bounce a signed handoff to another (say, internal) address with a 3xx."""
    state, url = webhook_receiver
    target = WebhookServer()
    thread = threading.Thread(target=target.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        for status in (301, 302, 307, 308):
            state.script.append((status, {"Location": f"http://127.0.0.1:{target.server_address[1]}/internal"}))
            with WebhookSink(url, SECRET, allow_private=True) as sink, pytest.raises(FatalHandoffError) as info:
                sink.deliver(idempotency_key="k", payload=payload())
            assert "redirects are not followed" in str(info.value)
        assert target.state.requests == []
    finally:
        target.shutdown()
        target.server_close()
        thread.join(5)


def test_private_addresses_are_refused_before_any_request(webhook_receiver: tuple[ServerState, str]) -> None:
    state, url = webhook_receiver
    port = url.split(":")[2].split("/")[0]
    for target in (url, f"http://localhost:{port}/x", f"http://[::1]:{port}/x", "http://169.254.169.254/latest"):
        with WebhookSink(target, SECRET) as sink, pytest.raises(FatalHandoffError, match="non-public"):
            sink.deliver(idempotency_key="k", payload=payload())
    assert state.requests == []


def test_a_run_drains_the_backlog_batch_after_batch_up_to_its_limit(
    engine: Engine, webhook_receiver: tuple[ServerState, str]
) -> None:
    state, url = webhook_receiver
    for n in range(9):
        add_sql(engine, f"l{n}@nl.example")
    run_queue(engine, config())
    ticks = iter(T0 + timedelta(seconds=s) for s in range(1000))

    with WebhookSink(url, SECRET, allow_private=True, timeout=5) as sink:
        first = deliver_pending(
            engine=engine, sink=sink, destination=DEST, clock=lambda: next(ticks), batch_size=2, limit=5
        )
        assert first.delivered == 5 and first.stopped == "the limit of 5 deliveries per run was reached"
        rest = deliver_pending(engine=engine, sink=sink, destination=DEST, clock=lambda: next(ticks), batch_size=2)
    assert rest.delivered == 4 and rest.stopped is None  # two more batches, then nothing is due
    assert len(effects(state)) == len(state.requests) == 9
    rows = outbox(engine)
    assert {r.status for r in rows} == {OutboxStatus.sent}
    delivered_at = sorted(r.delivered_at for r in rows)
    assert len(set(delivered_at)) == 9 and delivered_at[0] > T0  # each when the receiver took it, by the clock
