"""The Prefect settings leadflow defaults, and what `leadflow run` says when the temporary server is slow to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from leadflow.cli.prefect_env import DEFAULTS, apply_defaults, ephemeral_timeout_hint
from tests.flows.test_pipeline import make_workspace

BIN = Path(sys.executable).parent


def test_defaults_fill_in_what_the_user_left_unset_and_keep_what_they_set() -> None:
    environ = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}
    apply_defaults(environ)
    assert environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "600"  # the user's
    assert environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert DEFAULTS["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"  # Prefect's own is 20
    assert ephemeral_timeout_hint(RuntimeError("database is locked")) is None


def test_a_temporary_server_that_does_not_start_in_time_gets_a_message_saying_what_to_do(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A real `leadflow run` without PREFECT_API_URL, with a start budget too short for any machine."""
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=20)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEADFLOW_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    done = subprocess.run(
        [str(BIN / "leadflow"), "run", "ingest", "--workspace", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert done.returncode == 2, out
    assert "the temporary Prefect server did not start within 1 s" in out
    assert "prefect server start" in out and "export PREFECT_API_URL=http://127.0.0.1:4200/api" in out
    assert "export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300" in out
    assert "Traceback" not in out
