"""`leadflow ops leases`: what an admin sees of the single-writer leases, and releasing one, with real holders."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from leadflow.cli import ops
from leadflow.cli.main import app
from leadflow.leads.db.models import utcnow
from leadflow.leads.work.leases import read_leases
from tests.leads.holders import holder
from tests.waiting import until

runner = CliRunner()
NAME = "leadflow:nurture:enrollments"


@pytest.fixture
def workspace(tmp_path: Path, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0  # ops commands need one
    with (tmp_path / ".env").open("a") as env:
        env.write(f"LEADFLOW_DATABASE_URL={db_url}\n")
    monkeypatch.setattr(ops.console, "width", 250)  # one table row per line
    return tmp_path


def _leases(workspace: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["ops", "leases", "--workspace", str(workspace), *args])


def test_a_killed_holder_shows_dead_and_release_frees_it(workspace: Path, db_url: str, engine: Engine) -> None:
    assert "leases: none taken yet" in _leases(workspace).output
    with holder(db_url, NAME, "run-7", "--heartbeat", "3600", "--stale", "3600") as proc:
        shown = _leases(workspace)
        assert shown.exit_code == 0, shown.output
        row = next(line for line in shown.output.splitlines() if NAME in line)
        assert "alive" in row and "run-7" in row and str(proc.pid) in row and os.uname().nodename in row

        refused = _leases(workspace, "--release", NAME)
        assert refused.exit_code == 1
        assert "not released" in refused.output and "its process runs on this machine" in refused.output
        assert "--force" in refused.output and read_leases(engine)[0].holder == "run-7"

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        row = next(line for line in _leases(workspace).output.splitlines() if NAME in line)
        assert "dead" in row and str(proc.pid) in row

        released = _leases(workspace, "--release", NAME)
        assert released.exit_code == 0, released.output
        assert f"released {NAME} (was held by run run-7 (pid {proc.pid}" in released.output
        assert "dead" in released.output
    row = next(line for line in _leases(workspace).output.splitlines() if NAME in line)
    assert "free" in row and "run-7" not in row
    again = _leases(workspace, "--release", NAME)
    assert again.exit_code == 0 and f"{NAME} is not held; nothing to release" in again.output


def test_a_holder_elsewhere_is_refused_while_it_beats_and_force_releases_it(
    workspace: Path, db_url: str, engine: Engine
) -> None:
    with holder(db_url, NAME, "run-8", "--elsewhere", "box-2", "--heartbeat", "0.2", "--stale", "30"):
        row = next(line for line in _leases(workspace).output.splitlines() if NAME in line)
        assert "alive" in row and "box-2" in row
        refused = _leases(workspace, "--release", NAME)
        assert refused.exit_code == 1 and "its heartbeat is fresh" in refused.output
        forced = _leases(workspace, "--release", NAME, "--force")
        assert forced.exit_code == 0, forced.output
        assert f"released {NAME} (was held by run run-8" in forced.output and "alive" in forced.output
        assert read_leases(engine)[0].holder is None


def test_a_live_holder_that_stopped_beating_is_flagged_and_an_unknown_name_is_refused(
    workspace: Path, db_url: str, engine: Engine
) -> None:
    with holder(db_url, NAME, "run-9", "--heartbeat", "3600", "--stale", "0.3"):
        # Time must pass here: the holder's one heartbeat goes stale after 0.3 s.
        until("the heartbeat went stale", lambda: (e := read_leases(engine)[0].expires_at) is not None and e < utcnow())
        row = next(line for line in _leases(workspace).output.splitlines() if NAME in line)
        assert "alive (heartbeat late)" in row  # kept (its process runs here), but worth a look
        missing = _leases(workspace, "--release", "leadflow:nope")
    assert missing.exit_code == 1
    assert f"no lease named 'leadflow:nope' (leases: {NAME})" in missing.output
