"""The whole loop through Prefect, in a temporary workspace, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from leadflow.cli.workspace_setup import init_workspace
from leadflow.demo.data import generate_demo, write_demo
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.params import IngestParams, PipelineParams
from leadflow.flows.pipeline import pipeline_flow
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import EmailOutbox, HandoffOutbox, Lead, OutboxStatus, Quarantine, Stage, StageTransition

pytestmark = pytest.mark.usefixtures("prefect_harness")

END = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def make_workspace(folder: Path, database_url: str, *, leads: int = 400, extra_env: str = "") -> Path:
    init_workspace(folder)
    with (folder / ".env").open("a", encoding="utf-8") as env:
        env.write(f"LEADFLOW_DATABASE_URL={database_url}\n{extra_env}")
    write_demo(folder / "data", generate_demo(seed=11, leads=leads, end=END))
    return folder


def run(folder: Path, as_of: datetime = END):
    return pipeline_flow(PipelineParams(workspace=str(folder), as_of=as_of))


def emails_in(folder: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted((folder / "outbox").glob("*.eml"))
    ]


def test_pipeline_end_to_end_then_nothing_twice(tmp_path: Path, db_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", db_url)
    first = run(folder)

    engine = make_engine(db_url)
    with engine.connect() as conn:
        leads = conn.execute(select(func.count()).select_from(Lead)).scalar_one()
        by_stage = dict(conn.execute(select(Lead.stage, func.count()).group_by(Lead.stage)).all())
        sqls = by_stage.get(Stage.sql.value, 0)
        transitions = conn.execute(select(func.count()).select_from(StageTransition)).scalar_one()
    assert leads == 400
    assert sqls > 0 and by_stage.get(Stage.prospect.value, 0) > 0
    assert sum(m.leads for m in first.requalify.moves) == transitions

    sent = emails_in(folder)
    assert first.nurture.sent == len(sent) > 0
    for message in sent:
        assert message["List-Unsubscribe"].startswith("<http")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_content_type() == "multipart/alternative"
        assert "Keizersgracht" in message.get_body(("plain",)).get_content()

    inbox = sorted((folder / "handoff-inbox").glob("*.json"))
    assert first.handoff.delivered == len(inbox) == sqls
    handed = [json.loads(p.read_text()) for p in inbox]
    assert all(h["reason"] and h["explanation"] and h["stage_history"][-1]["to"] == "sql" for h in handed)

    # The same run again: nothing new is sent or handed off, no file changes.
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "outbox").iterdir()}
    second = run(folder)
    assert second.nurture.sent == 0 and second.handoff.delivered == 0
    assert second.requalify.moves == [] and sum(c.inserted for c in second.ingest.sources.values()) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "outbox").iterdir()} == before
    assert len(list((folder / "handoff-inbox").glob("*.json"))) == len(inbox)

    # Five days on, the second step of the sequence goes to those still enrolled, once each.
    later = run(folder, END + timedelta(days=5))
    assert later.nurture.sent > 0 and later.handoff.delivered == 0
    keys = [m["X-Leadflow-Key"] for m in emails_in(folder)]
    assert len(keys) == len(set(keys)) == first.nurture.sent + later.nurture.sent
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(EmailOutbox.status, func.count()).group_by(EmailOutbox.status)).all())
        handoffs = conn.execute(select(func.count()).select_from(HandoffOutbox)).scalar_one()
    assert statuses == {OutboxStatus.sent.value: len(keys)}
    assert handoffs == sqls
    engine.dispose()


def test_malformed_activity_line_is_quarantined_and_the_rest_ingested(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=50)
    activity = folder / "data" / "activity.jsonl"
    lines = activity.read_text().splitlines()
    lines.insert(3, '{"id": "broken-1", "email": "x@example.com", "type": "page_view", "at": ')
    lines.insert(
        7, json.dumps({"id": "bad-type", "email": "y@example.com", "type": "telepathy", "at": "2026-09-01T10:00:00Z"})
    )
    activity.write_text("\n".join(lines) + "\n")

    report = ingest_flow(IngestParams(workspace=str(folder), as_of=END))

    counts = report.sources["website"]
    assert counts.quarantined == 2
    assert counts.inserted == len(lines) - 2
    assert report.quarantine_by_reason == {"bad_json": 1, "unknown_type": 1}
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Quarantine.location, Quarantine.reason, Quarantine.raw).order_by(Quarantine.id)
        ).all()
    engine.dispose()
    assert [(r.location, r.reason) for r in rows] == [
        ("activity.jsonl:4", "bad_json"),
        ("activity.jsonl:8", "unknown_type"),
    ]
    assert rows[1].raw == lines[7]


def test_each_run_leaves_its_report_as_artifacts_in_prefect(tmp_path: Path, sqlite_url: str) -> None:
    import httpx
    from prefect.client.schemas.objects import Artifact
    from prefect.settings import PREFECT_API_URL

    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=100)
    report = run(folder)
    keys = ["leadflow-ingest", "leadflow-stage-changes", "leadflow-requalify", "leadflow-nurture", "leadflow-handoff"]

    # Straight to the REST API: Prefect 3.8.8's client sends nulls for unset filter fields,
    # which its own server refuses (422).
    api = PREFECT_API_URL.value()
    body = {"artifacts": {"key": {"any_": keys}}, "sort": "CREATED_DESC", "limit": 200, "offset": 0}
    artifacts = [Artifact.model_validate(a) for a in httpx.post(f"{api}/artifacts/filter", json=body).json()]
    latest = {}
    for artifact in sorted(artifacts, key=lambda a: a.created):
        latest[artifact.key] = artifact
    assert set(latest) == set(keys)
    assert len({a.flow_run_id for a in latest.values()}) == 4  # each step's report sits on its own subflow run
    moves = {
        (row["from_stage"], row["to_stage"]): row["leads"] for row in _table(latest["leadflow-stage-changes"].data)
    }
    assert moves == {(m.from_stage, m.to_stage): m.leads for m in report.requalify.moves}
    assert f"- sent: {report.nurture.sent}" in latest["leadflow-nurture"].data
    assert _table(latest["leadflow-handoff"].data)[0]["delivered"] == report.handoff.delivered


def _table(data: object) -> list[dict[str, object]]:
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def test_a_failing_source_does_not_hold_back_the_rest_of_the_pipeline(tmp_path: Path, sqlite_url: str) -> None:
    from leadflow.flows.ingest import IngestFailed

    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=100)
    config = folder / "leadflow.yaml"
    config.write_text(
        config.read_text().replace(
            "    path: data/activity.jsonl\n",
            "    path: data/activity.jsonl\n  - name: partner-feed\n    kind: file\n    path: data/missing.jsonl\n",
        )
    )
    with pytest.raises(IngestFailed, match="missing.jsonl"):
        run(folder)
    # Everything that did arrive went through: scored, nurtured, handed off.
    assert list((folder / "outbox").glob("*.eml")) and list((folder / "handoff-inbox").glob("*.json"))
