"""Start tests/leads/lease_holder.py as a real process and wait until it holds its lease."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(url: str, name: str, holder: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.leads.lease_holder", url, name, holder, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_held(proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Until the process prints `held` (it then holds the lease), or fail with its stderr."""
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "held":
        proc.kill()
        raise AssertionError(f"the holder process did not take its lease: {line!r} {proc.stderr.read()}")


@contextmanager
def holder(url: str, name: str, holder: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding the lease for the block; killed (and reaped) at the end if still running."""
    proc = start(url, name, holder, *args)
    try:
        wait_held(proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
