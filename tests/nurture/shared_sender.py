"""A nurture sending run in its own process, for the tests of runs side by side.

    python -m tests.nurture.shared_sender WORKSPACE GO_FILE RESULT_FILE BATCH_SIZE

opens the workspace and starts its run clock as the nurture flow does (so the run is older than
anything queued after this point), waits until GO_FILE exists, then runs the flow's send task and
writes how many emails it sent to RESULT_FILE and what it skipped, by reason, to RESULT_FILE.skipped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from leadflow.flows.nurture import send_outbox
from leadflow.flows.workspace import run_clock
from leadflow.leads.workspace import open_workspace
from leadflow.nurture.held import TemplateGate


def main(workspace: str, go: str, result: str, batch_size: str) -> None:
    ws = open_workspace(workspace)
    clock = run_clock(None)  # what nurture_flow passes its send task for a run started now
    Path(result + ".ready").write_text("ready")
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.01)
    gate = TemplateGate(ws.config, ws.path(ws.config.templates_dir))
    report = send_outbox.fn(ws, clock, int(batch_size), gate)
    Path(result).write_text(str(report.sent))
    Path(result + ".skipped").write_text(repr(dict(report.skipped)))
    ws.engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
