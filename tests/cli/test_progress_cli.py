"""`leadflow run` shows a progress bar per long step: rows done, rate, time left, ending at 100 %."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.cli.main import app
from tests.flows.test_pipeline import make_workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
# A finished bar: the step, the bar, 100%, done/total and the unit, the rate.
BAR = r"{step} [━ ]+ 100% (\d+)/(\d+) {unit} ([\d,]+|-) {unit}/s"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)


def finished_bar(output: str, step: str, unit: str) -> int:
    match = re.search(BAR.format(step=re.escape(step), unit=unit), output)
    assert match, f"no finished {step!r} bar in:\n{output}"
    done, total = int(match.group(1)), int(match.group(2))
    assert done == total
    return done


def test_run_with_progress_shows_a_bar_per_step_ending_at_100_percent(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=200)
    lines = sum(1 for line in (folder / "data" / "activity.jsonl").read_text().splitlines() if line.strip())

    def run(flow: str, *flags: str) -> str:
        result = runner.invoke(app, ["run", flow, "--workspace", str(folder), *flags])
        assert result.exit_code == 0, result.output
        return result.output

    assert finished_bar(run("ingest", "--progress"), "ingest website", "rows") == lines
    assert finished_bar(run("requalify", "--progress"), "requalify", "shards") >= 1
    out = run("nurture", "--progress")
    assert finished_bar(out, "send emails", "emails") == int(re.search(r"(\d+) emails sent this run", out).group(1)) > 0
    out = run("handoff", "--progress")
    assert (
        finished_bar(out, "handoff to file", "SQLs")
        == int(re.search(r"(\d+) new SQLs handed to sales", out).group(1))
        > 0
    )

    # Not a terminal and not asked for: no bar, as in a log file or a pipe.
    no_bar = re.compile(r"ingest website [━ ]+ \d+%")
    assert not no_bar.search(run("ingest")) and not no_bar.search(run("ingest", "--no-progress"))
