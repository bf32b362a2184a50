"""Operating leadflow on a real Prefect server: a work pool, deployments, workers, reports in the UI,
and two workers on PostgreSQL sharing the work without doing any of it twice.

One `prefect server start` (its own home and database, a free port) serves both tests; workers are
`prefect worker start` processes, so each flow run is a process of its own, as in production.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select

from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import (
    EmailOutbox,
    HandoffOutbox,
    Lead,
    OutboxStatus,
    StageTransition,
    WorkRound,
    WorkShard,
)
from tests.flows.test_pipeline import make_workspace
from tests.ops.prefect_server import PrefectServer, prefect_server, workers

END = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
POOL = "leadflow"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server with a process work pool, the pipeline deployed on it by `leadflow deploy`, and
    two `prefect worker start` processes polling the pool (one test uses one, the other both)."""
    from prefect.workers.process import ProcessWorker

    folder = tmp_path_factory.mktemp("prefect")
    with prefect_server(folder) as running:
        # What `prefect work-pool create leadflow --type process` sends.
        template = ProcessWorker.get_default_base_job_template()
        running.post("/work_pools/", {"name": POOL, "type": "process", "base_job_template": template})
        deploying = running.start(
            "leadflow", "deploy", "--pool", POOL, "--name", "pipeline", "--workspace", str(folder)
        )
        with workers(running, POOL, 2, folder):
            out, _ = deploying.communicate(timeout=120)
            assert deploying.returncode == 0, out
            yield running


def _params(folder: Path, shard_size: int) -> dict[str, object]:
    # One process per run: these tests count each run's task runs (helper processes' shards are none).
    params = {"workspace": str(folder), "as_of": END.isoformat(), "shard_size": shard_size, "processes": 1}
    return {"params": params}


def test_the_pipeline_deployment_runs_on_a_worker_and_its_report_shows_in_the_ui(
    server: PrefectServer, tmp_path: Path, sqlite_url: str
) -> None:
    deployment = server.get("/deployments/name/pipeline/pipeline")
    assert deployment["work_pool_name"] == POOL and deployment["entrypoint"] == "leadflow.flows.pipeline.pipeline_flow"
    assert deployment["global_concurrency_limit"]["limit"] == 1  # never two pipeline runs at once
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    schema = deployment["parameter_openapi_schema"]["definitions"]["PipelineParams"]["properties"]
    assert "Leads per requalify task run" in schema["shard_size"]["description"]  # the UI's form

    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=250)
    run_id = server.start_flow_run("pipeline/pipeline", _params(folder, 100))
    run = server.wait_for([run_id])[run_id]
    assert run["state"]["type"] == "COMPLETED", run["state"]

    subflows = {r["id"]: r for r in server.subflow_runs(run_id)}
    assert len(subflows) == 4 and all(r["state"]["type"] == "COMPLETED" for r in subflows.values())
    tasks = server.task_runs([run_id, *subflows])
    per_flow = Counter(t["flow_run_id"] for t in tasks)
    names = sorted(t["name"] for t in tasks)
    assert [n for n in names if n.startswith("score shard")] == [
        "score shard 1: leads 1-100",
        "score shard 2: leads 101-200",
        "score shard 3: leads 201-250",
    ]
    assert all(t["state"]["type"] == "COMPLETED" for t in tasks)
    # Work is batched: only requalify's task runs grow with the leads (one per shard of 50,000 by
    # default); the other steps take a fixed handful. A million leads, one file source:
    shards_here = math.ceil(250 / 100)
    fixed = len(tasks) - shards_here
    assert fixed == 7  # ingest 1 per source, nurture 2, handoff 4 (queue, SLAs, 1 per destination, notify)
    assert fixed + math.ceil(1_000_000 / 50_000) == 27 <= 200
    assert sorted(per_flow.values()) == [1, 2, 3, 4]  # ingest, nurture, requalify's shards, handoff

    artifacts = server.artifacts([run_id, *subflows])
    by_key = {a["key"]: a for a in artifacts}
    assert {
        "leadflow-pipeline",
        "leadflow-pipeline-steps",
        "leadflow-attention",
        "leadflow-ingest",
        "leadflow-stage-changes",
        "leadflow-requalify-steps",
        "leadflow-nurture",
        "leadflow-handoff",
    } <= set(by_key)
    report = by_key["leadflow-pipeline"]["data"]
    assert "| requalify | 250 leads scored (full)" in report and "## Slowest steps" in report
    slowest = json.loads(by_key["leadflow-pipeline-steps"]["data"])
    assert len(slowest) == len(tasks)
    assert [s["seconds"] for s in slowest] == sorted((s["seconds"] for s in slowest), reverse=True)
    assert "dead handoffs | 0 | `leadflow ops dead-letters`" in by_key["leadflow-attention"]["data"]
    headline = by_key["leadflow-pipeline"]["description"]
    assert headline.startswith("250 leads scored, ")

    # What an admin sees: the flow run page with its report, in a real browser.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(f"{server.url}/runs/flow-run/{run_id}")
            page.get_by_text("Artifacts", exact=True).first.click(timeout=30_000)
            page.get_by_text("leadflow-pipeline", exact=True).first.wait_for(timeout=30_000)
            page.locator("button.p-button-group__button").nth(1).click()  # list view: descriptions in full
            page.get_by_text(headline).first.wait_for(timeout=30_000)
            assert page.get_by_text("leadflow-pipeline", exact=True).first.is_visible()
            assert page.get_by_text("leadflow-attention", exact=True).first.is_visible()
            page.screenshot(path=tmp_path / "flow-run.png", full_page=True)

            page.get_by_text("leadflow-pipeline", exact=True).first.click()
            page.get_by_text("leadflow pipeline run").first.wait_for(timeout=30_000)
            text = page.inner_text("body")
            page.screenshot(path=tmp_path / "pipeline-report.png", full_page=True)
        finally:
            browser.close()
    assert "Slowest steps" in text and "Needs attention" in text
    assert f"{slowest[0]['step']}\t{slowest[0]['seconds']}" in text  # the slowest step, in its table row
    assert (tmp_path / "flow-run.png").stat().st_size > 10_000


@pytest.mark.postgres
def test_two_workers_on_postgresql_share_the_work_and_do_none_of_it_twice(
    server: PrefectServer, tmp_path: Path, postgres_url: str, smtp_server: tuple[object, int]
) -> None:
    handler, port = smtp_server
    folder = make_workspace(
        tmp_path / "ws", postgres_url, leads=600, extra_env=f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n"
    )
    # The same deployment without its concurrency limit, so nothing but the database keeps the runs apart.
    source = server.get("/deployments/name/pipeline/pipeline")
    copy = {
        key: source[key]
        for key in ("flow_id", "work_pool_name", "entrypoint", "path", "pull_steps", "job_variables",
                    "parameter_openapi_schema", "enforce_parameter_schema", "tags")
    }  # fmt: skip
    server.post("/deployments/", {**copy, "name": "parallel"})

    runs = [server.start_flow_run("pipeline/parallel", _params(folder, 100)) for _ in range(2)]
    states = server.wait_for(runs, timeout=150)
    assert [s["state"]["type"] for s in states.values()] == ["COMPLETED", "COMPLETED"]

    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            leads = conn.execute(select(func.count()).select_from(Lead)).scalar_one()
            scored = conn.execute(
                select(func.count()).select_from(Lead).where(Lead.scored_at.is_not(None))
            ).scalar_one()
            moves = Counter(conn.execute(select(StageTransition.lead_id, StageTransition.to_stage)).all())
            rounds = conn.execute(select(WorkRound.id, WorkRound.open_job)).all()
            shards = conn.execute(select(WorkShard.status, WorkShard.claimed_by, WorkShard.attempts)).all()
            emails = conn.execute(select(EmailOutbox.status, EmailOutbox.attempts, EmailOutbox.message_id)).all()
            handoffs = conn.execute(select(HandoffOutbox.status, HandoffOutbox.attempts)).all()
    finally:
        engine.dispose()

    assert leads == scored == 600
    assert moves and max(moves.values()) == 1  # every stage transition once
    assert len(rounds) == 1 and rounds[0].open_job is None  # one requalify round, closed
    assert len(shards) == 6 and all(s.status == "done" and s.attempts == 1 for s in shards)
    sharing = Counter(s.claimed_by for s in shards)

    received = [str(m.message["Message-ID"]) for m in handler.messages]  # type: ignore[attr-defined]
    sent = [e for e in emails if e.status == OutboxStatus.sent.value]
    assert len(received) == len(set(received)) == len(sent) == len(emails) > 0  # no email twice
    assert all(e.attempts == 1 for e in emails)
    assert sorted(received) == sorted(e.message_id for e in sent)
    assert handoffs and all(h.status == OutboxStatus.sent.value and h.attempts == 1 for h in handoffs)
    assert len(list((folder / "handoff-inbox").glob("*.json"))) == len(handoffs)
    print(f"shards per requalify run: {dict(sharing)}")
