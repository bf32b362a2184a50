"""Operations wiring shared by the flows: who this worker is, slowest steps, attention, leases, slots.

Events live in flows/events.py.

- The slowest steps come from Prefect's own record of the run's task runs (and its subflows').
- Leases and concurrency slots are taken by name; a missing Prefect limit is not an error
  (`strict=False`, like ingest's rate limits), so a fresh install runs without set-up.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from sqlalchemy import Engine

from leadflow.leads.db.engine import session_scope
from leadflow.leads.work.attention import attention_counts
from leadflow.leads.work.leases import holding

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def worker_id() -> str:
    """The flow run's id: it names the claims, leases and stage transitions of this run."""
    return str(flow_run.id) if flow_run.id else f"local-{uuid.uuid4()}"


def wait_until(done: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.5) -> bool:
    """Call `done` until it says yes or `timeout` seconds pass (then warn and go on: the next run finishes it)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            get_run_logger().warning("%s is still being worked on by another run; going on without it", what)
            return False
        time.sleep(poll)
    return True


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger inside a flow or task, else the module's (a step called from plain code)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@contextmanager
def single_writer(engine: Engine, name: str, *, wait: float = 600.0, poll: float = 1.0) -> Iterator[None]:
    """One run at a time for a step, across processes and machines (see leads.leases).

    A live holder is waited for up to `wait` seconds (it is doing the same step; this run then finds it
    done); a dead one is taken over as soon as it is seen: at once on the same machine, within
    leads.leases.STALE_AFTER of its last heartbeat from another one.
    """
    logger = _logger()
    with holding(engine, f"leadflow:{name}", holder=worker_id(), wait=wait, poll=poll, notify=logger.warning):
        yield


@contextmanager
def slot(limit: str | None) -> Iterator[None]:
    """Hold one slot of a Prefect global concurrency limit (e.g. leadflow-smtp) for the block, if it exists."""
    if not limit:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(limit, occupy=1, strict=False):
        yield


def vendor_limit(kind: str) -> str | None:
    """Handoff runs delivering to one CRM at once: `leadflow-<vendor>-handoff` (see `leadflow ops limits`)."""
    return f"leadflow-{kind}-handoff" if kind in ("hubspot", "salesforce", "pipedrive") else None


def top_level() -> bool:
    """True unless this flow runs inside another (the pipeline publishes the shared parts once)."""
    return not flow_run.parent_flow_run_id


def mail_limit(mail_url: str) -> str | None:
    """SMTP sends share `leadflow-smtp`; the file outbox needs no limit."""
    return "leadflow-smtp" if mail_url.startswith(("smtp://", "smtps://")) else None


# -- the slowest steps, from Prefect's record of the run ----------------------------------------


def _post(client: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    # Straight to the REST API: small filter bodies, answers read as plain JSON.
    response = client.request("POST", path, json=body)
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()
    return rows


def run_task_runs(run_id: str, *, settle: float = 3.0) -> list[dict[str, Any]]:
    """Task runs of a flow run and its subflows, once Prefect has recorded them all as finished.

    Task run states reach the server as events, a moment after the task returns; this waits (up to
    `settle` seconds) until every task run it sees is finished and no new one appears.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.instance().wait_until_empty()
    with get_client(sync_client=True) as client:
        children = _post(
            client, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "limit": 200}
        )
        runs = [run_id] + [c["id"] for c in children]
        body = {
            "task_runs": {"subflow_runs": {"exists_": False}},
            "flow_runs": {"id": {"any_": runs}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        }
        deadline, seen = time.monotonic() + settle, None
        while True:
            tasks = _post(client, "/task_runs/filter", body)
            ids = {t["id"] for t in tasks}
            finished = all((t.get("state") or {}).get("type") in TERMINAL for t in tasks)
            if (finished and ids == seen) or time.monotonic() >= deadline:
                return tasks
            seen = ids
            time.sleep(0.05)


def _seconds(task: dict[str, Any]) -> float:
    total = task.get("total_run_time") or 0.0
    if not total and task.get("start_time") and task.get("end_time"):
        start = datetime.fromisoformat(task["start_time"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(task["end_time"].replace("Z", "+00:00"))
        total = (end - start).total_seconds()
    return round(float(total), 3)


def slowest_steps(tasks: list[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    ranked = sorted(tasks, key=_seconds, reverse=True)[:top]
    return [
        {"step": t["name"], "seconds": _seconds(t), "state": (t.get("state") or {}).get("name", "")} for t in ranked
    ]


def publish_run_steps(top: int = 10) -> list[dict[str, Any]]:
    """A `leadflow-<flow>-steps` table: the run's slowest task runs (subflows included), longest first."""
    if not flow_run.id:
        return []
    try:
        rows = slowest_steps(run_task_runs(str(flow_run.id)), top)
    except Exception as exc:  # the report must never fail the run it describes
        get_run_logger().warning("could not read this run's task runs for its report: %s", exc)
        return []
    create_table_artifact(
        key=f"leadflow-{flow_run.flow_name}-steps",
        table=rows or [{"step": "(no task runs)", "seconds": 0, "state": ""}],
        description=f"The slowest steps of this {flow_run.flow_name} run (task runs, longest first)",
    )
    return rows


# -- where to look: dead letters and quarantine ---------------------------------------------------


def publish_attention(engine: Engine) -> dict[str, int]:
    """`leadflow-attention`: dead letters and quarantine, with where to read them."""
    with session_scope(engine) as session:
        counts = attention_counts(session)
    lines = [
        "# Needs attention",
        "",
        "| what | rows | where to look |",
        "|---|---|---|",
        f"| dead handoffs | {counts['handoffs_dead']} | `leadflow ops dead-letters`, table `handoff_outbox` "
        "(`status = 'dead'`, `last_error`) |",
        f"| dead emails | {counts['emails_dead']} | `leadflow ops dead-letters`, table `email_outbox` "
        "(`status = 'dead'`) |",
        f"| failed emails | {counts['emails_failed']} | table `email_outbox` (`status = 'failed'`: bounces, "
        "template errors) |",
        f"| quarantined records | {counts['quarantined']} | `leadflow ops dead-letters`, table `quarantine` "
        "(`location`, `reason`, `raw`) |",
        f"| handoffs not delivered yet | {counts['handoffs_waiting']} | `leadflow handoff status`; the next handoff "
        "run goes on with them |",
        f"| notifications not sent yet | {counts['notifications_waiting']} | table `notification_outbox` "
        "(`status = 'pending'`) |",
        "",
        "Dead rows are not retried again; fix the cause and run `leadflow ops retry-dead` to queue them once more.",
    ]
    summary = (
        f"Dead letters and quarantine: {counts['handoffs_dead']} dead handoffs, {counts['emails_dead']} dead emails, "
        f"{counts['emails_failed']} failed emails, {counts['quarantined']} quarantined records, "
        f"{counts['handoffs_waiting']} handoffs and {counts['notifications_waiting']} notifications not delivered yet"
    )
    create_markdown_artifact(key="leadflow-attention", markdown="\n".join(lines), description=summary)
    return counts
