"""Operations wiring shared by the flows: who this worker is, events, slowest steps, leases, slots.

- Events are bounded: per-lead events up to a cap per run, then one summary event per run with
  the full counts, so a run that moves a million leads sends a few hundred events, not a million.
- The slowest steps come from Prefect's own record of the run's task runs (and its subflows').
- Leases and concurrency slots are taken by name; a missing Prefect limit is not an error
  (`strict=False`, like ingest's rate limits), so a fresh install runs without set-up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from leads.claims import holding
from leads.models import (
    EmailOutbox,
    EnrollmentStatus,
    HandoffOutbox,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Quarantine,
    Stage,
    StageTransition,
)

EVENT_STAGES = (Stage.mql.value, Stage.sql.value)
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


@contextmanager
def single_writer(
    engine: Engine, name: str, *, wait: float = 600.0, ttl: timedelta = timedelta(hours=1)
) -> Iterator[None]:
    """One run at a time for a step, across processes and machines (see leads.claims.holding)."""
    with holding(engine, f"leadflow:{name}", holder=worker_id(), wait=wait, ttl=ttl):
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


def vendor_limit(destination: str) -> str | None:
    """Handoff runs delivering to one CRM at once: `leadflow-<vendor>-handoff` (see `leadflow ops limits`)."""
    for vendor in ("hubspot", "salesforce", "pipedrive"):
        if vendor in destination.lower():
            return f"leadflow-{vendor}-handoff"
    return None


def top_level() -> bool:
    """True unless this flow runs inside another (the pipeline publishes the shared parts once)."""
    return not flow_run.parent_flow_run_id


def mail_limit(mail_url: str) -> str | None:
    """SMTP sends share `leadflow-smtp`; the file outbox needs no limit."""
    return "leadflow-smtp" if mail_url.startswith(("smtp://", "smtps://")) else None


# -- events -------------------------------------------------------------------------------------


def _lead_resource(lead_id: int, email: str, stage: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"leadflow.lead.{lead_id}",
        "prefect.resource.name": email,
        "leadflow.stage": stage,
    }


def emit_stage_events(engine: Engine, *, run_id: str, cap: int) -> dict[str, int]:
    """`leadflow.lead.mql` / `leadflow.lead.sql` per lead this run moved there (up to `cap`), then one
    `leadflow.requalify.summary` with every count and how many per-lead events were left out."""
    with Session(engine) as session:
        counts: dict[str, int] = dict(
            session.execute(
                select(StageTransition.to_stage, func.count())
                .where(StageTransition.run_id == run_id)
                .group_by(StageTransition.to_stage)
            ).all()
        )
        rows = session.execute(
            select(StageTransition, Lead.email)
            .join(Lead, Lead.id == StageTransition.lead_id)
            .where(StageTransition.run_id == run_id, StageTransition.to_stage.in_(EVENT_STAGES))
            .order_by(StageTransition.id)
            .limit(cap)
        ).all()
    for transition, email in rows:
        emit_event(
            event=f"leadflow.lead.{transition.to_stage}",
            resource=_lead_resource(transition.lead_id, email, transition.to_stage),
            payload={
                "from_stage": transition.from_stage,
                "to_stage": transition.to_stage,
                "score": {"fit": transition.fit_score, "engagement": transition.engagement_score,
                          "total": transition.score},
                "reason": transition.reason,
                "ruleset_version": transition.ruleset_version,
            },
        )  # fmt: skip
    eligible = sum(counts.get(stage, 0) for stage in EVENT_STAGES)
    emit_event(
        event="leadflow.requalify.summary",
        resource={"prefect.resource.id": "leadflow.requalify", "prefect.resource.name": "requalify"},
        payload={"stage_changes": counts, "lead_events": len(rows), "lead_events_left_out": eligible - len(rows)},
    )
    return counts


def emit_dead_letters(engine: Engine, *, kind: str, destination: str, dead: int, sample: int = 10) -> None:
    """`leadflow.<kind>.dead-lettered` when this run gave up on some rows: the count and the newest few."""
    if dead <= 0:
        return
    table = HandoffOutbox if kind == "handoff" else EmailOutbox
    with Session(engine) as session:
        query = select(table.id, table.idempotency_key, table.lead_id, table.last_error).where(
            table.status == OutboxStatus.dead.value
        )
        if table is HandoffOutbox:
            query = query.where(HandoffOutbox.destination == destination)
        rows = session.execute(query.order_by(table.id.desc()).limit(sample)).all()
    emit_event(
        event=f"leadflow.{kind}.dead-lettered",
        resource={"prefect.resource.id": f"leadflow.{kind}.{destination}", "prefect.resource.name": destination},
        payload={
            "dead": dead,
            "table": table.__tablename__,
            "newest": [
                {"id": r.id, "key": r.idempotency_key, "lead_id": r.lead_id, "error": (r.last_error or "")[:300]}
                for r in rows
            ],
        },
    )


def emit_finished_sequences(engine: Engine, *, now: datetime, cap: int) -> dict[str, int]:
    """`leadflow.nurture.sequence-finished` per enrollment that completed its sequence in this run (up to
    `cap`), then one `leadflow.nurture.summary` with completions and exits per sequence."""
    with Session(engine) as session:
        ended = NurtureEnrollment.exited_at == now
        per = session.execute(
            select(NurtureEnrollment.sequence, NurtureEnrollment.exit_reason, func.count())
            .where(ended)
            .group_by(NurtureEnrollment.sequence, NurtureEnrollment.exit_reason)
        ).all()
        rows = session.execute(
            select(NurtureEnrollment.id, NurtureEnrollment.lead_id, NurtureEnrollment.sequence, Lead.email)
            .join(Lead, Lead.id == NurtureEnrollment.lead_id)
            .where(ended, NurtureEnrollment.status == EnrollmentStatus.completed.value)
            .order_by(NurtureEnrollment.id)
            .limit(cap)
        ).all()
    for row in rows:
        emit_event(
            event="leadflow.nurture.sequence-finished",
            resource={
                "prefect.resource.id": f"leadflow.enrollment.{row.id}",
                "prefect.resource.name": f"{row.sequence}: {row.email}",
                "leadflow.sequence": row.sequence,
            },
            related=[{**_lead_resource(row.lead_id, row.email, ""), "prefect.resource.role": "lead"}],
            payload={"sequence": row.sequence, "lead_id": row.lead_id},
        )
    ended_counts = {f"{sequence}:{reason}": n for sequence, reason, n in per}
    completed = sum(n for key, n in ended_counts.items() if key.endswith(":completed"))
    emit_event(
        event="leadflow.nurture.summary",
        resource={"prefect.resource.id": "leadflow.nurture", "prefect.resource.name": "nurture"},
        payload={"ended": ended_counts, "finished_events": len(rows), "finished_left_out": completed - len(rows)},
    )
    return ended_counts


# -- the slowest steps, from Prefect's record of the run ----------------------------------------


def _post(client: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    # Straight to the REST API: Prefect 3.8.8's client sends nulls for unset filter fields, which its
    # own server refuses (422).
    response = client.request("POST", path, json=body)
    response.raise_for_status()
    return response.json()


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


def attention_counts(engine: Engine) -> dict[str, int]:
    """What an admin may have to act on, in the whole database."""
    with Session(engine) as session:
        email = dict(
            session.execute(
                select(EmailOutbox.status, func.count())
                .where(EmailOutbox.status.in_([OutboxStatus.dead.value, OutboxStatus.failed.value]))
                .group_by(EmailOutbox.status)
            ).all()
        )
        handoff = session.execute(
            select(func.count()).select_from(HandoffOutbox).where(HandoffOutbox.status == OutboxStatus.dead.value)
        ).scalar_one()
        quarantined = session.execute(select(func.count()).select_from(Quarantine)).scalar_one()
    return {
        "emails_dead": email.get(OutboxStatus.dead.value, 0),
        "emails_failed": email.get(OutboxStatus.failed.value, 0),
        "handoffs_dead": handoff,
        "quarantined": quarantined,
    }


def publish_attention(engine: Engine) -> dict[str, int]:
    """`leadflow-attention`: dead letters and quarantine, with where to read them."""
    counts = attention_counts(engine)
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
        "",
        "Dead rows are not retried again; fix the cause and run `leadflow ops retry-dead` to queue them once more.",
    ]
    summary = (
        f"Dead letters and quarantine: {counts['handoffs_dead']} dead handoffs, {counts['emails_dead']} dead emails, "
        f"{counts['emails_failed']} failed emails, {counts['quarantined']} quarantined records"
    )
    create_markdown_artifact(key="leadflow-attention", markdown="\n".join(lines), description=summary)
    return counts
