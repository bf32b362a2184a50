"""The `leadflow` command run as a user runs it (a subprocess), asserting what lands on the terminal.

Runs talk to the session's Prefect test server (PREFECT_API_URL passed on), so no test waits for a
temporary server of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from leadflow.leads.db.models import utcnow
from tests import factories as make

LEADFLOW = [sys.executable, "-c", "from leadflow.cli.main import app; app()"]  # the console script's code, any venv


@pytest.fixture
def bare_env() -> dict[str, str]:
    """The test's environment without leadflow settings or Prefect log levels."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "PREFECT_LOGGING"))}
    return {**clean, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200"}


@pytest.fixture
def env(prefect_harness: None, bare_env: dict[str, str]) -> Iterator[dict[str, str]]:
    from prefect.settings import PREFECT_API_URL

    yield {**bare_env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def leadflow(*args: str, cwd: Path, env: dict[str, str], **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEADFLOW, *args], cwd=cwd, env={**env, **extra_env}, capture_output=True, text=True, timeout=600
    )


def said(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the user sees, on one line per sentence (rich wraps long lines)."""
    return re.sub(r"\s+", " ", result.stdout + result.stderr)


@pytest.mark.parametrize(
    "command", [["status"], ["handoff", "status"], ["ops", "dead-letters"], ["run"], ["check"], ["db", "upgrade"]]
)
def test_workspace_commands_refuse_outside_a_workspace_and_create_nothing(
    command: list[str], tmp_path: Path, bare_env: dict[str, str]
) -> None:
    result = leadflow(*command, cwd=tmp_path, env=bare_env)
    assert result.returncode == 2, said(result)
    assert f"{tmp_path} is not a leadflow workspace" in said(result)
    assert "--workspace DIR" in said(result) and "`leadflow init`" in said(result)
    assert list(tmp_path.iterdir()) == []  # no leadflow.db reporting zeros


def test_check_names_everything_a_run_would_fail_on_without_printing_secrets(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert leadflow("init", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / ".env").unlink()
    broken = {
        "LEADFLOW_MAIL_URL": "smtp://mailer:s3cret-pw@mail.example:587?connections=99",
        "LEADFLOW_HANDOFF_URL": "https://hooks.example/inbound/t0ken-in-path",
        "LEADFLOW_DATABASE_URL": "sqlite:///blocked/leadflow.db",
    }
    (tmp_path / "blocked").write_text("a file where the database's folder should be")
    config = tmp_path / "leadflow.yaml"
    config.write_text(
        config.read_text().replace(
            "    path: data/activity.jsonl\n", "    path: data/activity.jsonl\n  - name: crm\n    kind: hubspot\n"
        )
    )
    result = leadflow("check", cwd=tmp_path, env=env, **broken)
    out = said(result)
    assert result.returncode == 1, out
    assert "LEADFLOW_SECRET_KEY is not set: there is no .env" in out
    assert "has sent no email yet, so a new key is safe: `leadflow init`" in out
    assert "sources[website].path: data/activity.jsonl does not exist" in out
    assert "sources[crm]: HUBSPOT_TOKEN not set (environment or the workspace's .env)" in out
    assert "LEADFLOW_WEBHOOK_SECRET is not set" in out and "hooks.example" in out
    assert "LEADFLOW_MAIL_URL: connections must be a whole number from 1 to 16" in out
    assert "LEADFLOW_DATABASE_URL: cannot create or write blocked: blocked is a file, not a folder" in out
    assert "s3cret-pw" not in out and "t0ken-in-path" not in out and "mailer" not in out

    # The same mistakes fixed: a key (for a workspace that never sent email), the file, the secret, the URL.
    assert leadflow("init", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "activity.jsonl").write_text("")
    (tmp_path / "blocked").unlink()
    fixed = {
        **broken,
        "HUBSPOT_TOKEN": "pat-eu1-x",
        "LEADFLOW_MAIL_URL": "smtp://mail.example?connections=4",
        "LEADFLOW_WEBHOOK_SECRET": "whsec_x",
    }
    ok = leadflow("check", cwd=tmp_path, env=env, **fixed)
    assert ok.returncode == 0 and "is valid" in said(ok), said(ok)


def test_a_workspace_that_sent_email_never_gets_a_new_key(
    tmp_path: Path, env: dict[str, str], db_url: str, engine: Engine
) -> None:
    env = {**env, "LEADFLOW_DATABASE_URL": db_url}  # SQLite in the workspace, or a PostgreSQL database
    assert leadflow("init", cwd=tmp_path, env=env).returncode == 0
    sent = make.email_outbox(1, idempotency_key="nurture:1:warm-up:1", step=1, status="sent", sent_at=utcnow())
    make.add(engine, make.lead("anna@acme.example", id=1), sent)  # an email went out with the key in .env
    (tmp_path / ".env").unlink()  # lost in a move to a new server

    for command in (["init"], ["demo", "--leads", "50"]):
        result = leadflow(*command, cwd=tmp_path, env=env)
        assert result.returncode == 2, said(result)
        assert "restore the old key from your backup or secret store" in said(result)
        assert not (tmp_path / ".env").exists()
    check = leadflow("check", cwd=tmp_path, env=env)
    assert check.returncode == 1 and "The database holds emails sent with the old key" in said(check)
    assert "`leadflow init`" not in said(check)

    run = leadflow("run", "nurture", cwd=tmp_path, env=env)
    assert run.returncode == 1
    assert "the nurture run failed: LEADFLOW_SECRET_KEY is not set; `leadflow check` says how to restore it" in said(
        run
    )
    assert "Traceback" not in said(run)


def test_demo_refuses_more_leads_than_it_can_make_at_once(tmp_path: Path, bare_env: dict[str, str]) -> None:
    result = leadflow("demo", "--leads", "1000000", cwd=tmp_path, env=bare_env)
    assert result.returncode == 2
    assert "--leads 1000000: the demo makes 1 to 100,000 leads" in said(result) and "bench/" in said(result)
    assert list(tmp_path.iterdir()) == []


def test_runs_show_counts_and_summaries_not_prefect_logs_or_tracebacks(tmp_path: Path, env: dict[str, str]) -> None:
    demo = leadflow("demo", "--leads", "120", cwd=tmp_path, env=env)
    assert demo.returncode == 0, said(demo)
    assert "leadflow run summary" in said(demo)
    for boilerplate in ("Flow run", "Task run", "| INFO", "Finished in state", "temporary server"):
        assert boilerplate not in said(demo)

    (tmp_path / "data" / "more.jsonl").write_text(
        '{"id": "x-1", "email": "new.lead@acme.example", "type": "page_view", "at": "2026-01-05T10:00:00Z"}\nnot json\n'
    )
    config = tmp_path / "leadflow.yaml"
    config.write_text(
        config.read_text().replace(
            "    path: data/activity.jsonl\n",
            "    path: data/activity.jsonl\n  - name: partner\n    kind: file\n    path: data/more.jsonl\n",
        )
    )
    ingest = leadflow("run", "ingest", cwd=tmp_path, env=env)
    out = said(ingest)
    assert ingest.returncode == 0, out
    assert "leadflow ingest summary" in out and "{" not in ingest.stdout  # a summary, not a JSON dump
    assert re.search(r"partner\s*│\s*1\s*│\s*0\s*│\s*1\s*│\s*1", ingest.stdout), ingest.stdout
    assert "1 new events, 1 new leads, 1 records quarantined (" in out

    for flow, line in (
        ("requalify", "Requalified: "),
        ("nurture", "emails sent this run"),
        ("handoff", "new SQLs handed to sales"),
    ):
        result = leadflow("run", flow, cwd=tmp_path, env=env)
        assert result.returncode == 0 and f"leadflow {flow} summary" in said(result) and line in said(result)

    # --verbose: Prefect's log, carrying each step's counts at INFO.
    verbose = leadflow("run", "--verbose", cwd=tmp_path, env=env)
    log = said(verbose)
    assert verbose.returncode == 0, log
    assert "ingested 0 new events from 2 source(s), 0 records quarantined" in log
    assert re.search(r"requalified \d+ leads", log) and "nurture: 0 enrolled" in log
    assert "handoff: 0 handed off, 0 queued" in log

    # A failure: one line naming the cause; the traceback only with --verbose.
    failing = {"LEADFLOW_MAIL_URL": "smtp://mail.example?connections=99"}
    failed = leadflow("run", "nurture", cwd=tmp_path, env=env, **failing)
    assert failed.returncode == 1
    assert "the nurture run failed: LEADFLOW_MAIL_URL: connections must be a whole number from 1 to 16" in said(failed)
    assert "Traceback" not in said(failed) and len((failed.stdout + failed.stderr).splitlines()) <= 4
    loud = leadflow("run", "nurture", "--verbose", cwd=tmp_path, env=env, **failing)
    assert loud.returncode == 1 and "Traceback" in said(loud)


def test_an_unexpected_error_is_one_line_unless_verbose(tmp_path: Path, env: dict[str, str]) -> None:
    assert leadflow("init", cwd=tmp_path, env=env).returncode == 0
    down = {"LEADFLOW_DATABASE_URL": "postgresql://leadflow:pa55word@127.0.0.1:9/leads"}  # nothing listens on 9
    result = leadflow("status", cwd=tmp_path, env=env, **down)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[0].startswith("error: OperationalError:") and "port 9 failed" in lines[0], lines
    assert len(lines) == 2 and "--verbose" in lines[1] and "pa55word" not in said(result)
    loud = leadflow("--verbose", "status", cwd=tmp_path, env=env, **down)
    assert loud.returncode == 1 and "Traceback" in said(loud) and "pa55word" not in said(loud)


def test_a_run_with_problems_lists_them_and_exits_3(
    tmp_path: Path, env: dict[str, str], sqlite_url: str, webhook_receiver: tuple[object, str]
) -> None:
    from tests.flows.test_delivery_peers import webhook_workspace
    from tests.flows.test_run_outcomes import sqls_ready

    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    sqls_ready(folder)
    hook.script.extend([(503, {})] * 1000)  # type: ignore[attr-defined]  # the sales hook is down all run

    result = leadflow("run", "handoff", cwd=folder, env=env)
    out = said(result)
    assert result.returncode == 3, out
    assert "completed with problems" in out and "a whole batch of" in out and "503" in out
    assert "Traceback" not in out

    hook.script.clear()  # type: ignore[attr-defined]
    clean = leadflow("run", "requalify", cwd=folder, env=env)
    assert clean.returncode == 0 and "completed with problems" not in said(clean)
