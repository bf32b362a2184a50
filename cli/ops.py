"""`leadflow ops` and `leadflow serve`: what an admin runs to operate leadflow on Prefect.

- `leadflow serve` serves every deployment from one process (single machine, no work pool).
- `leadflow ops limits` creates the Prefect global concurrency limits the flows take slots of.
- `leadflow ops dead-letters` lists dead handoffs and emails and the quarantine; `retry-dead` requeues.
- `leadflow ops leases` lists the single-writer leases and their holders; `--release NAME` frees one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update
from sqlmodel import Session, col

from leadflow.cli.app import WorkspaceOption, console
from leadflow.cli.workspace import opened_workspace
from leadflow.leads.db.models import EmailOutbox, HandoffOutbox, OutboxStatus, Quarantine, utcnow
from leadflow.leads.work.leases import LeaseHeld, LeaseInfo, LeaseNotFound, LeaseState, read_leases, release_for_admin

ops_app = typer.Typer(help="Operations: concurrency limits, dead letters, leases.", no_args_is_help=True)


@dataclass(frozen=True)
class LimitSpec:
    name: str
    limit: int
    decay: float  # slots freed per second: > 0 makes it a rate limit (calls per second), 0 a concurrency limit
    what: str


LIMITS: tuple[LimitSpec, ...] = (
    LimitSpec("leadflow-hubspot", 10, 10.0, "HubSpot API calls by ingest: 10 per second"),
    LimitSpec("leadflow-salesforce", 5, 5.0, "Salesforce API calls by ingest: 5 per second"),
    LimitSpec("leadflow-pipedrive", 8, 8.0, "Pipedrive API calls by ingest: 8 per second"),
    LimitSpec("leadflow-hubspot-handoff", 1, 0.0, "handoff runs delivering to HubSpot at once"),
    LimitSpec("leadflow-salesforce-handoff", 1, 0.0, "handoff runs delivering to Salesforce at once"),
    LimitSpec("leadflow-pipedrive-handoff", 1, 0.0, "handoff runs delivering to Pipedrive at once"),
    LimitSpec("leadflow-smtp", 2, 0.0, "nurture runs sending through SMTP at once"),
)


def gcl_commands() -> list[str]:
    """The same limits as `prefect gcl create` lines, for admins who prefer Prefect's CLI."""
    return [
        f"prefect gcl create {s.name} --limit {s.limit}" + (f" --slot-decay-per-second {s.decay:g}" if s.decay else "")
        for s in LIMITS
    ]


def ensure_limits() -> list[tuple[str, str]]:
    """Create each missing limit; leave existing ones (an admin may have tuned them). Returns (name, action)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    done = []
    with get_client(sync_client=True) as client:
        for spec in LIMITS:
            try:
                client.read_global_concurrency_limit_by_name(spec.name)
                done.append((spec.name, "exists"))
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=spec.name, limit=spec.limit, slot_decay_per_second=spec.decay)
                )
                done.append((spec.name, "created"))
    return done


@ops_app.command("limits")
def limits(
    print_only: Annotated[bool, typer.Option("--print", help="Print `prefect gcl create` lines instead.")] = False,
) -> None:
    """Create the Prefect global concurrency limits leadflow's flows take slots of (on PREFECT_API_URL)."""
    if print_only:
        for line in gcl_commands():
            typer.echo(line)
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    what = {s.name: s for s in LIMITS}
    for name, action in ensure_limits():
        spec = what[name]
        console.print(f"{action:8} {name} (limit {spec.limit}): {spec.what}", highlight=False)


AUTOMATIONS = Path(__file__).resolve().parents[1] / "flows" / "automations.yaml"


def load_automations(block_document_id: str, path: Path = AUTOMATIONS) -> list[Any]:
    """The example automations with the notification block filled in, validated by Prefect's own model."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(path.read_text())["automations"]
    for automation in data:
        for action in automation["actions"]:
            if action["type"] == "send-notification":
                action["block_document_id"] = block_document_id
    return [AutomationCore.model_validate(a) for a in data]


@ops_app.command("automations")
def automations(
    block: Annotated[str, typer.Option(help="Name of the notification block to send through (create it in the UI).")],
    block_type: Annotated[str, typer.Option(help="Its block type slug.")] = "slack-webhook",
    print_only: Annotated[bool, typer.Option("--print", help="Print the JSON instead of creating them.")] = False,
) -> None:
    """Create (or replace) the automations: notify on dead letters and failed runs; mark runs that died Crashed."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name=block, block_type_slug=block_type)
        wanted = load_automations(str(document.id))
        if print_only:
            typer.echo(json.dumps([a.model_dump(mode="json") for a in wanted], indent=2))
            return
        for automation in wanted:
            for existing in client.read_automations_by_name(automation.name):
                client.delete_automation(existing.id)
            client.create_automation(automation)
            console.print(f"created automation {automation.name!r}", highlight=False)


# Emails worth sending again once the cause is fixed: dead ones (the mail server kept refusing), and
# those that earlier versions marked failed on a template error (now such emails are held, never failed).
# A bounce ("permanent: …") stays failed: its address is suppressed.
EMAILS_TO_RETRY = or_(
    col(EmailOutbox.status) == OutboxStatus.dead.value,
    and_(col(EmailOutbox.status) == OutboxStatus.failed.value, col(EmailOutbox.last_error).startswith("template ")),
)


@ops_app.command("dead-letters")
def dead_letters(
    workspace: WorkspaceOption = None,
    limit: Annotated[int, typer.Option(help="Rows to show per kind.")] = 20,
) -> None:
    """Dead handoffs and emails (given up after their retries) and quarantined input, newest first."""
    with opened_workspace(workspace) as ws:
        with Session(ws.engine) as session:
            kinds: tuple[tuple[str, type[HandoffOutbox] | type[EmailOutbox], ColumnElement[bool]], ...] = (
                ("dead handoffs", HandoffOutbox, col(HandoffOutbox.status) == OutboxStatus.dead.value),
                ("emails to retry (dead, or failed on a template error)", EmailOutbox, EMAILS_TO_RETRY),
            )
            for title, table, which in kinds:
                rows = session.execute(
                    select(col(table.id), col(table.idempotency_key), col(table.attempts), col(table.last_error))
                    .where(which)
                    .order_by(col(table.id).desc())
                    .limit(limit)
                ).all()
                out = Table(title=f"{title} ({table.__tablename__})", title_justify="left")
                for column in ("id", "key", "attempts", "last error"):
                    out.add_column(column)
                for row in rows:
                    out.add_row(str(row.id), row.idempotency_key, str(row.attempts), (row.last_error or "")[:120])
                console.print(out if rows else f"{title}: none")
            reasons = session.execute(
                select(col(Quarantine.reason), func.count())
                .group_by(col(Quarantine.reason))
                .order_by(func.count().desc())
            ).all()
            if not reasons:
                console.print("quarantine: none")
            else:
                console.print("quarantine by reason: " + ", ".join(f"{r} {n}" for r, n in reasons), highlight=False)
                newest = session.execute(
                    select(
                        col(Quarantine.source), col(Quarantine.location), col(Quarantine.reason), col(Quarantine.detail)
                    )
                    .order_by(col(Quarantine.id).desc())
                    .limit(limit)
                ).all()
                out = Table(title="newest quarantined records (quarantine)", title_justify="left")
                for column in ("source", "location", "reason", "detail"):
                    out.add_column(column)
                for row in newest:
                    out.add_row(row.source, row.location, row.reason, row.detail[:120])
                console.print(out)


@ops_app.command("retry-dead")
def retry_dead(
    workspace: WorkspaceOption = None,
    handoffs: Annotated[bool, typer.Option("--handoffs/--no-handoffs", help="Requeue dead handoffs.")] = True,
    emails: Annotated[bool, typer.Option("--emails/--no-emails", help="Requeue dead emails.")] = True,
) -> None:
    """Queue dead rows once more (after fixing the cause); their idempotency keys stay, so nothing doubles.

    Emails that failed on a template error (before such emails were held) are queued again too.

    Handoffs (and owner notifications) go through `leadflow handoff retry --all --notifications`'s code, which
    also restarts their dead-letter horizon; `leadflow handoff retry` picks single ids or one destination.
    """
    from leadflow.handoff.deadletters import redrive

    with opened_workspace(workspace) as ws:
        with Session(ws.engine) as session:
            if handoffs:
                count = redrive(session, now=utcnow())
                console.print(f"requeued {count} handoff_outbox rows", highlight=False)
                count = redrive(session, now=utcnow(), notifications=True)  # the handoffs are pending by now
                console.print(f"requeued {count} notification_outbox rows", highlight=False)
            if emails:
                count = (
                    session.connection()
                    .execute(  # a connection's DML result carries its row count
                        update(EmailOutbox)
                        .where(EMAILS_TO_RETRY)
                        .values(status=OutboxStatus.pending.value, attempts=0, next_attempt_at=utcnow())
                    )
                    .rowcount
                )
                console.print(
                    f"requeued {count} email_outbox rows (dead, or failed on a template error)", highlight=False
                )
            session.commit()


def deploy(pool: str, workspace: Path | None, pipeline_schedule: bool, only: list[str] | None = None) -> list[str]:
    """Create or update every deployment on a work pool (what `prefect deploy --all` does with prefect.yaml).

    Each run's environment gets the workspace and Prefect's heartbeats (cli/prefect_env.py), so a run
    whose process dies is marked Crashed. Returns the deployment names.
    """
    from leadflow.cli.prefect_env import RUN_ENV, apply_defaults

    apply_defaults()
    folder = str((workspace or Path(os.environ.get("LEADFLOW_WORKSPACE", "."))).resolve())
    from leadflow.flows.deployments import runner_deployments

    env = {"LEADFLOW_WORKSPACE": folder, **RUN_ENV}
    names = []
    for deployment in runner_deployments(folder, pipeline_schedule=pipeline_schedule, job_variables={"env": env}):
        if only and deployment.name not in only:
            continue
        deployment.apply(work_pool_name=pool)
        names.append(f"{deployment.flow_name}/{deployment.name}")
    return names


def serve(workspace: Path | None, pipeline_schedule: bool, limit: int | None) -> None:
    """Serve every deployment from this process until interrupted (its flow runs inherit its environment)."""
    from leadflow.cli.prefect_env import apply_defaults

    apply_defaults()  # heartbeats from every flow run it starts
    folder = str((workspace or Path(os.environ.get("LEADFLOW_WORKSPACE", "."))).resolve())
    os.environ["LEADFLOW_WORKSPACE"] = folder  # flow runs started by serve read their workspace from here
    from prefect import serve as prefect_serve

    from leadflow.flows.deployments import runner_deployments

    prefect_serve(*runner_deployments(folder, pipeline_schedule=pipeline_schedule), limit=limit)


def _lease_table(rows: list[LeaseInfo], now: datetime) -> Table:
    """One row per lease; names and run ids are never cut (an admin copies them)."""
    out = Table(title="leases (work_lease)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    out.add_column("name", no_wrap=True, min_width=max(len(info.name) for info in rows))
    out.add_column("state", min_width=5)
    out.add_column("pid", no_wrap=True)
    out.add_column("host", overflow="fold")
    out.add_column("since (UTC)")
    out.add_column("heartbeat")
    out.add_column("run", overflow="fold")  # last: a narrow terminal wraps the run id instead of cutting it
    for info in rows:
        state = info.state(now)
        late = state is LeaseState.alive and info.expires_at is not None and info.expires_at < now  # kept: it runs
        out.add_row(
            info.name,
            state.value + (" (heartbeat late)" if late else ""),
            str(info.pid) if info.pid is not None else "-",
            info.host or "-",
            f"{info.since:%Y-%m-%d %H:%M:%S}" if info.since and info.holder else "-",
            f"{(now - info.heartbeat_at).total_seconds():.0f} s ago" if info.heartbeat_at else "-",
            info.holder or "-",
        )
    return out


def _release(engine: Engine, name: str, *, force: bool, now: datetime) -> None:
    try:
        freed = release_for_admin(engine, name, force=force)
    except LeaseNotFound:
        names = ", ".join(info.name for info in read_leases(engine)) or "none"
        console.print(f"no lease named {name!r} (leases: {names})", highlight=False)
        raise typer.Exit(1) from None
    except LeaseHeld as held:
        why = "its process runs on this machine" if held.lease.here else "its heartbeat is fresh"
        console.print(
            f"not released: {name} is held by {held.lease.describe(now)}, which is alive ({why}). Releasing it "
            "lets another run do the same step alongside it; add --force if you are sure",
            highlight=False,
        )
        raise typer.Exit(1) from None
    if freed.holder is None:
        console.print(f"{name} is not held; nothing to release", highlight=False)
    else:
        console.print(f"released {name} (was held by {freed.describe(now)}, {freed.state(now).value})", highlight=False)


@ops_app.command("leases")
def leases(
    workspace: WorkspaceOption = None,
    release: Annotated[str | None, typer.Option("--release", metavar="NAME", help="Free this lease.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Release even if its holder is alive.")] = False,
) -> None:
    """Leases (one writer at a time per step): who holds each, its heartbeat, alive or not; --release frees one.

    A dead holder's lease is taken over by the next run by itself (at once on the same machine, after its
    heartbeat goes stale elsewhere); releasing by hand is for when no run should wait even that long.
    """
    with opened_workspace(workspace) as ws:
        now = utcnow()
        if release is not None:
            _release(ws.engine, release, force=force, now=now)
            return
        rows = read_leases(ws.engine)
        if not rows:
            console.print("leases: none taken yet")
            return
        console.print(_lease_table(rows, now))
        console.print(
            "dead or stale leases are taken over by the next run; `leadflow ops leases --release NAME` frees one",
            highlight=False,
        )
