"""Prefect events others can react to: stage changes (per lead up to a cap, then a summary) and dead letters."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.flows.handoff import handoff_flow
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.params import HandoffParams, IngestParams, RequalifyParams
from leadflow.flows.requalify import requalify_flow
from tests import factories as make
from tests.flows.test_delivery_peers import webhook_workspace
from tests.flows.test_pipeline import END, make_workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")


def events_of(flow_run_id: Any, until: str, timeout: float = 20) -> list[dict[str, Any]]:
    """leadflow.* events related to a flow run, once the event named `until` has been stored."""
    from prefect.settings import PREFECT_API_URL

    body = {
        "filter": {
            "event": {"prefix": ["leadflow."]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 50,  # the most the events API returns in one page
    }
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30)
        assert answer.is_success, answer.text
        events = answer.json()["events"]
        if any(e["event"] == until for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_stage_events_are_capped_per_run_and_the_summary_carries_every_count(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=200)
    ingest_flow(IngestParams(workspace=str(folder), as_of=END))
    state = requalify_flow(RequalifyParams(workspace=str(folder), as_of=END, max_lead_events=4), return_state=True)
    report = state.result()
    to_stage = Counter()
    for move in report.moves:
        to_stage[move.to_stage] += move.leads
    assert to_stage["mql"] + to_stage["sql"] > 4  # more than the cap moved there

    events = events_of(state.state_details.flow_run_id, until="leadflow.requalify.summary")
    per_lead = [e for e in events if e["event"] in ("leadflow.lead.mql", "leadflow.lead.sql")]
    (summary,) = [e for e in events if e["event"] == "leadflow.requalify.summary"]
    assert len(per_lead) == 4
    assert summary["payload"]["stage_changes"] == dict(to_stage)
    assert summary["payload"]["lead_events"] == 4
    assert summary["payload"]["lead_events_left_out"] == to_stage["mql"] + to_stage["sql"] - 4
    for event in per_lead:
        stage = event["event"].rsplit(".", 1)[1]
        assert event["resource"]["prefect.resource.id"].startswith("leadflow.lead.")
        assert event["resource"]["leadflow.stage"] == stage == event["payload"]["to_stage"]
        assert "@" in event["resource"]["prefect.resource.name"] and event["payload"]["reason"]


def test_a_dead_lettered_handoff_emits_an_event_with_the_rows_to_look_at(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    hook.script.extend([(400, {})] * 1000)  # the receiver refuses every payload: dead-lettered at once
    ingest_flow(IngestParams(workspace=str(folder), as_of=END))
    requalify_flow(RequalifyParams(workspace=str(folder), as_of=END))
    state = handoff_flow(HandoffParams(workspace=str(folder), as_of=END), return_state=True)
    report = state.result()
    assert report.dead == report.queued > 0

    events = events_of(state.state_details.flow_run_id, until="leadflow.handoff.dead-lettered")
    (dead,) = [e for e in events if e["event"] == "leadflow.handoff.dead-lettered"]
    assert dead["resource"]["prefect.resource.name"] == report.destination
    assert dead["payload"]["dead"] == report.dead and dead["payload"]["table"] == "handoff_outbox"
    newest = dead["payload"]["newest"]
    assert 0 < len(newest) <= 10 and all(row["key"].startswith("handoff:") and "400" in row["error"] for row in newest)


def test_the_example_automation_notifies_an_admin_of_dead_letters(tmp_path: Path) -> None:
    """`leadflow ops automations --block ...` creates it; a dead-letter event makes Prefect call the block."""
    from prefect.events import emit_event

    from leadflow.cli.ops import load_automations
    from tests.flows.admin_hook import admin_hook

    with admin_hook() as hook:
        received = hook.received
        try:
            output = hook.install_automations("ops-admin-hook")
            assert "leadflow: dead letters" in output and "leadflow: failed runs" in output

            hook.wait_until_automations_act()  # the triggers service loads new automations on its own clock
            destination = "webhook:crm.example"
            resource = {"prefect.resource.id": f"leadflow.handoff.{destination}", "prefect.resource.name": destination}
            emit_event(
                event="leadflow.handoff.dead-lettered",
                resource=resource,
                payload={"dead": 2, "newest": [{"key": f"handoff:7:{destination}", "error": "410 Gone"}]},
            )
            hook.wait_for_notification()
        finally:
            _delete_automations(*(a.name for a in load_automations(str(uuid.UUID(int=0)))))  # the server is shared
    assert received, "no notification arrived"
    assert received[0]["subject"] == "leadflow: 2 handoff(s) to webhook:crm.example dead-lettered"
    assert "handoff:7:webhook:crm.example (410 Gone)" in received[0]["body"]


def _delete_automations(*names: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in names:
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)


def test_smtp_sends_take_a_slot_of_the_leadflow_smtp_limit(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from leadflow.flows.nurture import nurture_flow
    from leadflow.flows.params import NurtureParams

    handler, port = smtp_server
    folder = make_workspace(
        tmp_path / "ws", sqlite_url, leads=100, extra_env=f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n"
    )
    with get_client(sync_client=True) as client:
        limit_id = client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="leadflow-smtp", limit=2))
    try:
        ingest_flow(IngestParams(workspace=str(folder), as_of=END))
        requalify_flow(RequalifyParams(workspace=str(folder), as_of=END))
        state = nurture_flow(NurtureParams(workspace=str(folder), as_of=END), return_state=True)
        assert state.result().sent == len(handler.messages) > 0
        from prefect.settings import PREFECT_API_URL

        body = {
            "filter": {
                "event": {"prefix": ["prefect.concurrency-limit."]},
                "resource": {"id": [f"prefect.concurrency-limit.{limit_id}"]},
            },
            "limit": 50,
        }
        deadline = time.monotonic() + 20
        while True:
            events = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30).json()["events"]
            names = {e["event"] for e in events}
            if {"prefect.concurrency-limit.acquired", "prefect.concurrency-limit.released"} <= names:
                break
            assert time.monotonic() < deadline, names
            time.sleep(0.2)
    finally:  # the limit was this test's alone (a fresh id), and the server is shared
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name("leadflow-smtp")


def test_finished_sequences_emit_one_event_each_up_to_the_cap_and_a_summary(engine: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from prefect.settings import PREFECT_API_URL
    from sqlalchemy import insert
    from sqlmodel import Session

    from leadflow.flows.events import emit_finished_sequences
    from leadflow.leads.db.models import NurtureEnrollment

    now = datetime(2031, 3, 4, 5, 6, 7)  # unique to this test: it names the enrollments' end
    make.add(engine, *(make.lead(f"l{i}@acme.example", id=i) for i in range(1, 6)))
    with Session(engine) as session:
        session.execute(
            insert(NurtureEnrollment),
            [{"lead_id": i, "sequence": "warm-up", "step": 3, "status": status, "exited_at": at, "exit_reason": why}
             for i, status, at, why in [(1, "completed", now, "completed"), (2, "completed", now, "completed"),
                                        (3, "completed", now, "completed"), (4, "exited", now, "became sql"),
                                        (5, "completed", now - timedelta(days=1), "completed")]],
        )  # fmt: skip
        session.commit()

    since = datetime.now(UTC).isoformat()  # the events of this call only (the server is shared)
    ended = emit_finished_sequences(engine, now=now, cap=2)

    assert ended == {"warm-up:completed": 3, "warm-up:became sql": 1}
    body = {"filter": {"event": {"prefix": ["leadflow.nurture."]}, "occurred": {"since": since}}, "limit": 50}
    deadline = time.monotonic() + 20
    while True:
        events = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30).json()["events"]
        summary = [e for e in events if e["event"] == "leadflow.nurture.summary"]
        finished = [e for e in events if e["event"] == "leadflow.nurture.sequence-finished"]
        if (summary and len(finished) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(summary) == 1 and summary[0]["payload"]["ended"] == ended
    assert summary[0]["payload"]["finished_events"] == 2 and summary[0]["payload"]["finished_left_out"] == 1
    assert len(finished) == 2 and {e["resource"]["leadflow.sequence"] for e in finished} == {"warm-up"}
    assert all(e["related"][0]["prefect.resource.role"] == "lead" for e in finished)
