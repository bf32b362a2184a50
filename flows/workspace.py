"""The workspace and the clock of a flow run.

A top-level run (a deployment, `leadflow run`) has one opened workspace (`leadflow.leads.workspace`);
the pipeline hands the same one to its subflows, so every step sees one config and one engine.
The config is validated before the database is touched, so a typo in leadflow.yaml stops the
run with a clear message and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from leadflow.flows.params import RunParams
from leadflow.leads.db.models import utcnow
from leadflow.leads.workspace import Workspace, open_workspace

__all__ = ["Workspace", "run_clock", "run_time", "run_workspace"]  # Workspace: what a flow runs in


@contextmanager
def run_workspace(params: RunParams) -> Iterator[Workspace]:
    """The workspace a flow runs in: the one its caller handed down with the parameters (the pipeline,
    `leadflow run`; the caller closes it), else one opened for this run and closed when it ends."""
    if params.opened is not None:
        yield params.opened
        return
    with open_workspace(params.workspace) as ws:
        yield ws


def run_time(as_of: datetime | None) -> datetime:
    """The run's notion of now, as naive UTC like every timestamp in the database."""
    if as_of is None:
        return utcnow()
    if as_of.tzinfo is None:
        return as_of
    return as_of.astimezone(UTC).replace(tzinfo=None)


def run_clock(as_of: datetime | None) -> Callable[[], datetime]:
    """The clock senders read at each claim and each server answer: the wall clock, naive UTC.

    With `as_of` (a replay, a test) it starts at `as_of` and runs at wall-clock pace, so what the run
    queued at `as_of` is due for it. Scoring and queueing keep `run_time`'s fixed moment.
    """
    if as_of is None:
        return utcnow
    start, began = run_time(as_of), time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)
