"""What a run leaves behind when not everything went: backlogs drained in batches or shown, and a final
state an admin sees in the Prefect runs list ("Completed with problems", Failed) with the report saying why.

Real flows on a real (temporary) Prefect server, a real SQLite file, a signed-webhook receiver and an
SMTP server on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadflow.cli.workspace_setup import init_workspace
from leadflow.flows.handoff import handoff_flow
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.nurture import nurture_flow
from leadflow.flows.params import HandoffParams, IngestParams, NurtureParams, PipelineParams, RequalifyParams
from leadflow.flows.pipeline import pipeline_flow
from leadflow.flows.problems import PROBLEMS_STATE
from leadflow.flows.requalify import requalify_flow
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import EmailOutbox, OutboxStatus, Stage
from tests import factories as make
from tests.flows.test_delivery_peers import webhook_workspace
from tests.flows.test_ops_events import events_of
from tests.flows.test_pipeline import END, make_workspace
from tests.peers import REJECTED, SECRET

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _api(path: str, body: dict[str, Any]) -> Any:
    from prefect.settings import PREFECT_API_URL

    answer = httpx.post(f"{PREFECT_API_URL.value()}{path}", json=body, timeout=30)
    assert answer.is_success, answer.text
    return answer.json()


def server_state(flow_run_id: Any) -> tuple[str, str, str]:
    """(type, name, message) of a flow run's state as the Prefect server holds it (the runs list shows it)."""
    from prefect.settings import PREFECT_API_URL

    run = httpx.get(f"{PREFECT_API_URL.value()}/flow_runs/{flow_run_id}", timeout=30).json()
    return run["state"]["type"], run["state"]["name"], run["state"]["message"] or ""


def artifact(flow_run_id: Any, key: str) -> dict[str, Any]:
    body = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 5}
    (found,) = _api("/artifacts/filter", body)
    return found


def sqls_ready(folder: Path) -> None:
    ingest_flow(IngestParams(workspace=str(folder), as_of=END))
    requalify_flow(RequalifyParams(workspace=str(folder), as_of=END))


def handoff(folder: Path, **params: Any) -> Any:
    return handoff_flow(HandoffParams(workspace=str(folder), as_of=END, **params), return_state=True)


def test_handoff_drains_the_whole_backlog_in_batches(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    sqls_ready(folder)
    state = handoff(folder, batch_size=4)
    report = state.result()

    assert report.queued > 3 * 4  # several batches' worth
    assert report.delivered == report.queued == len(hook.requests)
    assert len({r.headers["webhook-id"] for r in hook.requests}) == report.queued
    assert all(c.backlog == 0 and c.stopped is None for c in report.destinations.values())
    # The owners' notifications too (the demo configures no URL: each is settled as nobody to notify).
    assert report.notify_skipped > 3 * 4 and report.notify_backlog == 0 and report.notify_stopped is None
    assert report.problems == []
    assert (state.type.value, state.name) == ("COMPLETED", "Completed")
    assert server_state(state.state_details.flow_run_id)[:2] == ("COMPLETED", "Completed")


def test_a_capped_run_shows_what_it_left_and_the_next_run_delivers_it(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    sqls_ready(folder)
    state = handoff(folder, batch_size=4, max_deliveries=7)
    report = state.result()
    (name,) = report.destinations
    left = report.queued - 7

    assert report.delivered == 7 == len(hook.requests) and report.destinations[name].backlog == left > 0
    kind, state_name, message = server_state(state.state_details.flow_run_id)
    assert (kind, state_name) == ("COMPLETED", PROBLEMS_STATE) and state.name == PROBLEMS_STATE
    assert f"{name}: {left} not delivered yet: the limit of 7 deliveries per run was reached" in message
    run_id = state.state_details.flow_run_id
    owners = artifact(run_id, "leadflow-handoff-owners")["data"]
    assert "## Not delivered yet" in owners and f"- {name}: {left} (the limit of 7" in owners
    assert "## Problems this run" in owners
    attention = artifact(run_id, "leadflow-attention")
    assert f"| handoffs not delivered yet | {left} |" in attention["data"]
    assert report.notify_backlog > 0 and "the limit of 7 notifications per run was reached" in message  # owners too
    assert f"{left} handoffs and {report.notify_backlog} notifications not delivered yet" in attention["description"]
    events = events_of(run_id, until="leadflow.handoff.backlog")
    (backlog,) = [e for e in events if e["event"] == "leadflow.handoff.backlog"]
    assert backlog["resource"]["prefect.resource.name"] == name
    assert backlog["payload"] == {"backlog": left, "reason": "the limit of 7 deliveries per run was reached"}

    again = handoff(folder, batch_size=4)
    assert again.result().delivered == left and again.name == "Completed"
    assert len(hook.requests) == report.queued == len({r.headers["webhook-id"] for r in hook.requests})


def test_a_peer_that_fails_a_whole_batch_stops_its_delivery_for_the_run(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    sqls_ready(folder)
    hook.script.extend([(200, {})] * 4 + [(503, {})] * 1000)  # the receiver goes down after one batch
    state = handoff(folder, batch_size=4)
    report = state.result()
    (name,) = report.destinations

    assert report.delivered == 4 and report.retried == 4  # one batch went, the next failed whole; no more tried
    assert report.destinations[name].backlog == report.queued - 4
    assert state.name == PROBLEMS_STATE
    assert "a whole batch of 4 failed" in state.message and "503" in state.message

    hook.script.clear()  # back up: a later run (past the retry backoff) delivers the rest, each once
    later = handoff_flow(HandoffParams(workspace=str(folder), as_of=END + timedelta(hours=2)), return_state=True)
    assert later.result().delivered == report.queued - 4 and later.name == "Completed"
    ids = [r.headers["webhook-id"] for r in hook.requests]
    assert len(set(ids)) == report.queued and len(ids) == report.queued + 4  # only the four refused went twice


def test_a_pipeline_with_a_failed_source_and_a_failing_destination_says_so(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=200, extra_env=f"LEADFLOW_WEBHOOK_SECRET={SECRET}\n")
    config = folder / "leadflow.yaml"
    config.write_text(
        config.read_text()
        .replace(
            "  destination: file://handoff-inbox\n",
            "  allow_private_addresses: true\n  destinations:\n    - kind: file\n      path: handoff-inbox\n"
            f"    - name: sales-hook\n      kind: webhook\n      url: {url}\n",
        )
        .replace(
            "    path: data/activity.jsonl\n",
            "    path: data/activity.jsonl\n  - name: partner-feed\n    kind: file\n    path: data/missing.jsonl\n",
        )
    )
    hook.script.extend([(503, {})] * 1000)
    state = pipeline_flow(PipelineParams(workspace=str(folder), as_of=END), return_state=True)
    run_id = state.state_details.flow_run_id

    kind, name, message = server_state(run_id)
    assert (kind, name) == ("FAILED", "Failed")
    assert "partner-feed stopped" in message and "sales-hook" in message
    children = {
        r["name"]: r for r in _api("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [str(run_id)]}}})
    }
    subflows = {server_state(r["id"])[1] for r in children.values()}
    assert subflows == {"Completed", PROBLEMS_STATE}
    by_flow = {}
    for r in children.values():
        flow = httpx.get(f"{_base()}/flows/{r['flow_id']}", timeout=30).json()["name"]
        by_flow[flow] = server_state(r["id"])
    assert by_flow["ingest"][1] == PROBLEMS_STATE and "partner-feed" in by_flow["ingest"][2]
    assert by_flow["handoff"][1] == PROBLEMS_STATE and "sales-hook" in by_flow["handoff"][2]
    assert by_flow["nurture"][1] == by_flow["requalify"][1] == "Completed"

    pipeline = artifact(run_id, "leadflow-pipeline")
    inbox = len(list((folder / "handoff-inbox").glob("*.json")))
    assert inbox > 0 and len(hook.requests) > 0
    assert f"SQLs delivered (file {inbox}, sales-hook 0), 0 dead, {inbox} not delivered yet" in pipeline["data"]
    assert "failed sources: partner-feed" in pipeline["description"]
    assert "problem(s)" in pipeline["description"]
    problems = pipeline["data"].split("## Problems this run")[1]
    assert "ingest: source partner-feed stopped" in problems
    assert f"handoff: sales-hook: {inbox} not delivered yet: a whole batch of {inbox} failed" in problems


def _base() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def test_failed_emails_end_a_nurture_run_completed_with_problems(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    smtp, port = smtp_server
    folder = tmp_path / "ws"
    init_workspace(folder)  # no sources: the leads are written straight to the database
    with (folder / ".env").open("a", encoding="utf-8") as env:
        env.write(f"LEADFLOW_DATABASE_URL={sqlite_url}\nLEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n")
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with session_scope(engine) as session:
        session.add_all(make.lead(e, stage=Stage.prospect) for e in ("ok@example.com", REJECTED))
    state = nurture_flow(NurtureParams(workspace=str(folder), as_of=END), return_state=True)
    report = state.result()

    assert report.sent == 1 == len(smtp.messages) and report.failed == {"bounced": 1}
    assert server_state(state.state_details.flow_run_id) == (
        "COMPLETED",
        PROBLEMS_STATE,
        "nurture: 1 email(s) failed: bounced",
    )
    text = artifact(state.state_details.flow_run_id, "leadflow-nurture")["data"]
    assert "- nurture: 1 email(s) failed: bounced" in text
    with engine.connect() as connection:
        statuses = sorted(connection.execute(select(EmailOutbox.status)).scalars())
    engine.dispose()
    assert statuses == [OutboxStatus.failed.value, OutboxStatus.sent.value]


def test_the_shipped_failed_run_automation_hears_of_a_run_with_problems(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    """`leadflow ops automations` creates it; a handoff run that leaves a backlog makes Prefect call the block."""
    from prefect import tags

    from tests.flows.admin_hook import admin_hook
    from tests.flows.test_ops_events import _delete_automations

    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    sqls_ready(folder)
    with admin_hook() as admin:
        received = admin.received
        try:
            admin.install_automations("outcomes-admin-hook")
            admin.wait_until_automations_act()  # the triggers service loads new automations on its own clock
            with tags("leadflow", "handoff"):  # as registry.run and the deployments tag it
                state = handoff(folder, max_deliveries=2)
            assert state.name == PROBLEMS_STATE
            admin.wait_for_notification()
        finally:
            _delete_automations("leadflow: dead letters", "leadflow: failed runs")  # the server is shared
    assert received, "no notification arrived"
    assert received[0]["subject"].startswith("leadflow: handoff run ") and PROBLEMS_STATE in received[0]["subject"]
    assert "the limit of 2 deliveries per run was reached" in received[0]["body"]
