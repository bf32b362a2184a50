"""`leadflow ops dead-letters` and `retry-dead`: what an admin sees and does after an alert."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session
from typer.testing import CliRunner

from leadflow.cli.main import app
from leadflow.cli.workspace_setup import EXAMPLE_CONFIG
from leadflow.leads.db.models import HandoffOutbox, OutboxStatus, Quarantine
from tests import factories as make

runner = CliRunner()


@pytest.fixture
def workspace(tmp_path: Path, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"LEADFLOW_DATABASE_URL={db_url}\n")
    shutil.copyfile(EXAMPLE_CONFIG, tmp_path / "leadflow.yaml")  # a workspace: commands refuse to run elsewhere
    rows = [
        make.handoff_outbox(1, idempotency_key=f"handoff:{n}:webhook:crm.example", status=status, attempts=attempts,
                            last_error=error)
        for n, status, attempts, error in [(1, "dead", 8, "503 Service Unavailable"), (2, "sent", 1, None),
                                           (3, "dead", 1, "410 Gone: endpoint retired")]
    ]  # fmt: skip
    quarantined = Quarantine(source="website", location="activity.jsonl:4", reason="bad_json", detail="x", raw="{")
    make.add(engine, make.lead("anna@acme.example", id=1), *rows, quarantined)
    return tmp_path


def test_dead_letters_lists_dead_rows_and_quarantine_then_retry_requeues_them_once(
    workspace: Path, engine: Engine
) -> None:
    shown = runner.invoke(app, ["ops", "dead-letters", "--workspace", str(workspace)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "handoff:3:webhook:crm.example" in shown.output and "410 Gone" in shown.output
    assert "handoff:2:" not in shown.output  # delivered rows are not dead letters
    assert "emails to retry (dead, or failed on a template error): none" in shown.output
    assert "quarantine by reason: bad_json 1" in shown.output and "activity.jsonl:4" in shown.output

    retried = runner.invoke(app, ["ops", "retry-dead", "--workspace", str(workspace), "--no-emails"])
    assert retried.exit_code == 0, retried.output
    assert "requeued 2 handoff_outbox rows" in retried.output
    with Session(engine) as session:
        rows = session.execute(
            select(HandoffOutbox.idempotency_key, HandoffOutbox.status, HandoffOutbox.attempts)
        ).all()
    assert sorted(rows) == [
        ("handoff:1:webhook:crm.example", OutboxStatus.pending.value, 0),
        ("handoff:2:webhook:crm.example", OutboxStatus.sent.value, 1),
        ("handoff:3:webhook:crm.example", OutboxStatus.pending.value, 0),
    ]
    with Session(engine) as session:  # the dead-letter horizon (hours since queued) starts again from the re-drive
        requeued = session.execute(select(HandoffOutbox.requeued_at).where(HandoffOutbox.status == "pending")).all()
    assert len(requeued) == 2 and all(at is not None for (at,) in requeued)
    again = runner.invoke(app, ["ops", "retry-dead", "--workspace", str(workspace)])
    assert "requeued 0 handoff_outbox rows" in again.output and "requeued 0 email_outbox rows" in again.output
