"""A nurture run killed while enrolling does not hold up the next one: it takes the step over and sends.

Before, a run killed with SIGKILL kept `nurture:enrollments` for an hour: the next run waited 600 s,
failed and sent nothing. The killed holder here is a real process in flows.ops.single_writer.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from leadflow.leads.db.engine import make_engine, upgrade
from leadflow.leads.db.models import utcnow
from leadflow.leads.work.leases import LeaseState, read_leases
from tests.flows.test_pipeline import emails_in, make_workspace, run
from tests.leads.holders import holder

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_next_run_takes_over_from_a_killed_one_and_sends_its_emails(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=120)
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with holder(sqlite_url, "nurture:enrollments", "-", "--flows") as proc:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            (killed,) = read_leases(engine)
            assert killed.name == "leadflow:nurture:enrollments" and killed.state(utcnow()) is LeaseState.dead
            report = run(folder)
        assert report.nurture.sent > 0 and len(emails_in(folder)) == report.nurture.sent
        leases = {info.name: info.state(utcnow()) for info in read_leases(engine)}
        assert leases["leadflow:nurture:enrollments"] is LeaseState.free
    finally:
        engine.dispose()
