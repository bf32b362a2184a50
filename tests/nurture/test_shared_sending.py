"""Two nurture sending runs side by side, in separate processes, share one outbox.

Each run reads the wall clock at every claim, so the rows a younger run queued are due for an older
one too; every email goes exactly once, and `sent_at` is when the SMTP server accepted it.
Real database (SQLite file and PostgreSQL), real aiosmtpd on loopback, real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from leadflow.cli.workspace_setup import init_workspace
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import EmailOutbox, OutboxStatus, Stage, utcnow
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.steps import queue_due_steps
from tests import factories as make

ROOT = Path(__file__).resolve().parents[2]
EMAILS = 300


def _sender(folder: Path, go: Path, result: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.nurture.shared_sender", str(folder), str(go), str(result), "20"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        stderr=subprocess.PIPE,
    )


def _wait_ready(result: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not Path(str(result) + ".ready").exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the sending process did not start"
        time.sleep(0.05)


def test_runs_side_by_side_share_sending_and_each_email_goes_once(
    tmp_path: Path, db_url: str, smtp_server: tuple[Any, int]
) -> None:
    smtp, port = smtp_server
    folder = tmp_path / "ws"
    init_workspace(folder)
    with (folder / ".env").open("a", encoding="utf-8") as env:
        env.write(f"LEADFLOW_DATABASE_URL={db_url}\nLEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n")
    engine = make_engine(db_url)
    upgrade(engine)
    config = load_config(folder / "leadflow.yaml")
    go = tmp_path / "go"

    # The older run starts (its clock with it), then a younger run queues the emails, then starts sending too.
    older = _sender(folder, go, tmp_path / "older")
    _wait_ready(tmp_path / "older", older)
    with session_scope(engine) as session:
        session.add_all(make.lead(f"lead{i}@example.com", stage=Stage.prospect) for i in range(EMAILS))
    queued_at = utcnow()
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=queued_at)
        assert queue_due_steps(session=session, config=config, now=queued_at) == EMAILS
    younger = _sender(folder, go, tmp_path / "younger")
    _wait_ready(tmp_path / "younger", younger)
    go.write_text("go")
    for process in (older, younger):
        assert process.wait(timeout=300) == 0, process.stderr.read().decode() if process.stderr else ""

    sent = {name: int((tmp_path / name).read_text()) for name in ("older", "younger")}
    for name in ("older", "younger"):  # each claim was the run's own: no row claimed by both, no lease taken over
        assert (tmp_path / f"{name}.skipped").read_text() == "{}"
    assert sent["older"] > 0 and sent["younger"] > 0  # both took part
    assert sent["older"] + sent["younger"] == EMAILS
    keys = [m.message["X-Leadflow-Key"] for m in smtp.messages]
    assert len(keys) == len(set(keys)) == EMAILS  # every email exactly once
    accepted = {m.message["Message-ID"]: m.accepted_at for m in smtp.messages}
    with Session(engine) as session:
        rows = session.scalars(select(EmailOutbox)).all()
    engine.dispose()
    assert {row.status for row in rows} == {OutboxStatus.sent.value}
    for row in rows:
        assert row.sent_at is not None and row.sent_at >= accepted[row.message_id] > queued_at
