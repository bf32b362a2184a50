"""Many ingest runs of a big file at once, under Prefect: every run ends, with the right counts.

A file of 32 MB or more is parsed in forked worker processes. Under a Prefect flow run those
workers used to inherit Prefect's SIGTERM handler, so stopping them ran Python's exit path in a
forked copy of a busy, threaded process; a lock another thread held at fork time (stderr's, here
kept busy by a thread that writes to it as log handlers do) then blocked a worker for good and the
run waited on it forever. The runs go in a child process so a hang is a failed test, not a stuck
suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.cli.workspace_setup import init_workspace
from leadflow.connectors.files import PARALLEL_MIN_BYTES

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROOT = Path(__file__).resolve().parents[2]
RUNS, AT_ONCE = 8, 4
TIMEOUT = 600  # seconds for all the runs; one takes about 10 s here on a busy machine

RUNS_SCRIPT = """
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from prefect import flow
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.params import IngestParams

folders = json.loads(sys.argv[1])
done = threading.Event()

def chatter():  # another thread writing to stderr all the while, as log handlers and progress bars do
    while not done.is_set():
        sys.stderr.write("." * 4000 + "\\n")
        time.sleep(0.0005)

def one(folder):
    report = ingest_flow(IngestParams(workspace=folder, as_of=datetime(2026, 10, 2)))
    return report.sources["website"].model_dump()

@flow(name="many ingests")
def many():
    threading.Thread(target=chatter, daemon=True).start()
    with ThreadPoolExecutor({at_once}) as pool:
        results = list(pool.map(one, folders))
    done.set()
    return results

print("RESULTS " + json.dumps(many()), flush=True)
"""


def big_activity_file(path: Path) -> dict[str, int]:
    """A JSONL file just over the parallel threshold: events, every 97th id sent twice, every 1009th line
    broken. Returns what an ingest of it must count."""
    target = PARALLEL_MIN_BYTES + (1 << 20)
    kinds = ["page_view", "email_open", "email_click", "download", "webinar"]
    counts = {"inserted": 0, "duplicates": 0, "quarantined": 0}
    leads: set[int] = set()
    lines, size, n = [], 0, 0
    while size < target:
        n += 1
        lead = n % 20011
        event_id = f"ev-{n - 1:08d}" if n % 97 == 0 else f"ev-{n:08d}"
        if n % 1009 == 0:
            line = '{"id": "broken", "email": \n'
            counts["quarantined"] += 1
        else:
            line = json.dumps(
                {
                    "id": event_id,
                    "email": f"lead{lead:05d}@company{lead % 499:03d}.example",
                    "type": kinds[n % len(kinds)],
                    "at": f"2026-09-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
                    "target": f"/page/{n % 200}",
                    "properties": {"utm_source": "newsletter", "seq": n},
                },
                separators=(",", ":"),
            )
            line += "\n"
            leads.add(lead)
            if n % 97 == 0 and (n - 1) % 1009 != 0:
                counts["duplicates"] += 1
            else:
                counts["inserted"] += 1
        lines.append(line)
        size += len(line)
    path.write_text("".join(lines), encoding="utf-8")
    counts["new_leads"] = len(leads)
    return counts


def test_many_parallel_ingests_of_a_big_file_under_prefect_all_finish_with_the_right_counts(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    big = tmp_path / "activity.jsonl"
    expected = big_activity_file(big)
    assert big.stat().st_size >= PARALLEL_MIN_BYTES  # the forked workers' path, not the in-process one
    folders = []
    for n in range(RUNS):
        folder = tmp_path / f"ws{n}"
        init_workspace(folder)
        (folder / "data").mkdir(exist_ok=True)
        os.link(big, folder / "data" / "activity.jsonl")  # the same file, not 8 copies
        folders.append(str(folder))

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(ROOT)}
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNS_SCRIPT.format(at_once=AT_ONCE), json.dumps(folders)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the runs and any worker they left behind
            process.communicate()
            stuck = [line for line in stderr_path.read_text(errors="replace").splitlines() if not line.startswith(".")]
            pytest.fail(f"{RUNS} parallel ingests did not finish in {TIMEOUT} s (hung); stderr:\n" + "\n".join(stuck))
    errors = [line for line in stderr_path.read_text(errors="replace").splitlines() if not line.startswith(".")]
    assert process.returncode == 0, "\n".join(errors)
    # A worker stopped through Prefect's SIGTERM handler printed "Process ForkPoolWorker-n: Traceback …".
    assert not [line for line in errors if "Traceback" in line or "TerminationSignal" in line], "\n".join(errors)
    [results] = [
        json.loads(line[len("RESULTS ") :]) for line in out.decode().splitlines() if line.startswith("RESULTS ")
    ]
    assert len(results) == RUNS
    for counts in results:
        assert counts["error"] is None
        assert {key: counts[key] for key in expected} == expected
