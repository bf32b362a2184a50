"""A destination added to a running workspace, through the handoff flow: it starts with new SQLs only."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from leadflow.cli.summary import _print_owners
from leadflow.handoff.report import HandoffRunReport
from tests.flows.test_handoff_owners import handoff, latest_report_markdown
from tests.flows.test_pipeline import make_workspace, run

pytestmark = pytest.mark.usefixtures("prefect_harness")

TWO_INBOXES = """destinations:
    - {kind: file, path: handoff-inbox}
    - {name: archive, kind: file, path: archive-inbox}"""


def test_an_inbox_added_later_is_not_flooded_with_past_sqls(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=200)
    sqls = run(folder).handoff.delivered
    assert sqls > 3 and len(list((folder / "handoff-inbox").iterdir())) == sqls

    config = folder / "leadflow.yaml"
    config.write_text(config.read_text().replace("destination: file://handoff-inbox", TWO_INBOXES))
    added = handoff(folder, 1)
    assert added.destinations["archive"].queued == 0 and not (folder / "archive-inbox").exists()
    note = f"archive is new: it receives the SQLs from now on; the {sqls} handed to other destinations"
    assert note in added.started["archive"] and "file" not in added.started
    assert f"## New destinations\n\n- {note}" in latest_report_markdown()  # what the admin reads in the UI
    summary = summary_lines(added)
    assert any(note in line for line in summary), summary  # and what `leadflow run` prints

    # Sales want the history after all: `since: all` sends it, once.
    config.write_text(config.read_text().replace("path: archive-inbox}", "path: archive-inbox, since: all}"))
    backfill = handoff(folder, 2)
    assert backfill.destinations["archive"].delivered == sqls and backfill.started == {}
    assert len(list((folder / "archive-inbox").iterdir())) == sqls
    assert handoff(folder, 3).queued == 0


def summary_lines(report: HandoffRunReport) -> list[str]:
    """The handoff part of `leadflow run`'s summary for this report, as the terminal shows it."""
    console = Console(record=True, width=100)
    _print_owners(console, report)
    return console.export_text().splitlines()
