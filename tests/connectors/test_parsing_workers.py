"""The processes that parse a big file: a dead one stops the read with a clear error, never a wait forever,
and none is left behind however the read ends."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import leadflow.connectors.files
import leadflow.connectors.parse_workers
from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.parse_workers import ParsingStopped
from tests.leads.test_bulk_ingest import NOW, _messy_file


def parsers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("leadflow-parse-")]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leadflow.connectors.files, "CHUNK_BYTES", 7_000)


@pytest.fixture
def slow_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each range takes a little while (the forked workers inherit the patch), so a worker killed after
    the first page still had ranges to parse: on a busy machine they could otherwise all be done already."""
    parse = leadflow.connectors.parse_workers._parse_in_worker

    def slowly(*args: object) -> bytes:
        time.sleep(0.05)  # time must pass: a range takes this long to parse
        return parse(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(leadflow.connectors.parse_workers, "_parse_in_worker", slowly)


def test_a_parsing_process_killed_midway_stops_the_read_with_an_error_naming_it(
    tmp_path: Path, small_chunks: None, slow_parsing: None
) -> None:
    file = _messy_file(tmp_path / "activity.jsonl", events=6000)
    source = FileActivitySource("web", file, batch_size=50, workers=2, parallel_min_bytes=0)
    pages = source.pages(file, None, now=NOW)
    next(pages)
    victim = parsers()[0]
    os.kill(victim.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    stopped = rf"parsing process \(pid {victim.pid}\) ended \(exit code -9\) on bytes \d+-\d+ of activity\.jsonl"
    with pytest.raises(ParsingStopped, match=stopped):
        for _ in pages:
            pass
    assert parsers() == []  # the other one was stopped too


def test_a_read_left_unfinished_stops_its_parsing_processes(tmp_path: Path, small_chunks: None) -> None:
    file = _messy_file(tmp_path / "activity.jsonl", events=6000)
    source = FileActivitySource("web", file, batch_size=50, workers=2, parallel_min_bytes=0)
    pages = source.pages(file, None, now=NOW)
    next(pages)
    assert len(parsers()) == 2
    pages.close()  # a page that failed to store ends the read this way
    assert parsers() == []


def test_parsing_processes_end_at_once_on_sigterm_and_ignore_ctrl_c(tmp_path: Path, small_chunks: None) -> None:
    """They do not run the handlers they inherit (Prefect's SIGTERM handler raises an exception instead of
    ending the process; a terminal's Ctrl-C is the parent's to act on)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a parent that handles SIGTERM itself
    try:
        file = _messy_file(tmp_path / "activity.jsonl", events=6000)
        source = FileActivitySource("web", file, batch_size=50, workers=2, parallel_min_bytes=0)
        pages = source.pages(file, None, now=NOW)
        next(pages)
        first, second = parsers()
        os.kill(first.pid, signal.SIGINT)
        os.kill(second.pid, signal.SIGTERM)
        second.join(10)
        assert second.exitcode == -signal.SIGTERM
        assert first.is_alive()
        pages.close()
    finally:
        signal.signal(signal.SIGTERM, previous)


KILLED_PARENT = """
import multiprocessing, os, signal, sys
from datetime import datetime
from pathlib import Path
import leadflow.connectors.files
from leadflow.connectors.files import FileActivitySource
leadflow.connectors.files.CHUNK_BYTES = 7_000
file = Path(sys.argv[1])
source = FileActivitySource("web", file, batch_size=50, workers=2, parallel_min_bytes=0)
pages = source.pages(file, None, now=datetime(2026, 10, 1))
next(pages)
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def test_parsing_processes_end_when_the_run_is_killed(tmp_path: Path) -> None:
    file = _messy_file(tmp_path / "activity.jsonl", events=6000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run([sys.executable, "-c", KILLED_PARENT, str(file)], capture_output=True, text=True, env=env)
    assert run.returncode == -signal.SIGKILL, run.stderr
    workers = [int(pid) for pid in run.stdout.split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]  # no orphan left parsing or waiting for work
