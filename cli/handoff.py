"""`leadflow handoff …`: dead letters and disabled destinations, for the admin who fixes a receiver."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from leadflow.cli.app import WorkspaceOption, console
from leadflow.cli.workspace import opened_workspace
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import utcnow

handoff_app = typer.Typer(help="Sales handoff: dead letters, re-drives, disabled destinations.", no_args_is_help=True)


@handoff_app.command("status")
def status(workspace: WorkspaceOption = None) -> None:
    """Dead letters (with their last error) and destinations switched off by a 410 Gone."""
    from leadflow.handoff.deadletters import dead_handoffs
    from leadflow.handoff.destinations import all_disabled

    with opened_workspace(workspace) as ws:
        with session_scope(ws.engine) as session:
            dead = dead_handoffs(session)
            table = Table(title=f"Dead letters: {len(dead)}", title_justify="left")
            for column in ("id", "destination", "lead", "attempts", "queued", "last error"):
                table.add_column(column)
            for row in dead:
                queued = row.requeued_at or row.created_at
                email = (row.payload.get("lead") or {}).get("email", str(row.lead_id))
                table.add_row(
                    str(row.id),
                    row.destination,
                    email,
                    str(row.attempts),
                    f"{queued:%Y-%m-%d %H:%M}",
                    row.last_error or "",
                )
            console.print(table)
            disabled = all_disabled(session)
            for d in disabled:
                console.print(f"destination {d.name} disabled since {d.disabled_at:%Y-%m-%d %H:%M} UTC: {d.reason}")
            if not disabled:
                console.print("no destination is disabled")


@handoff_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead handoff ids (see `leadflow handoff status`).")] = None,
    destination: Annotated[str | None, typer.Option(help="Only dead handoffs to this destination.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead handoff.")] = False,
    notifications: Annotated[bool, typer.Option(help="Also re-drive dead notifications.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Put dead handoffs back in the queue; the next handoff run delivers them (same idempotency key)."""
    from leadflow.handoff.deadletters import redrive

    if not (ids or destination or all_):
        console.print("[bold red]error:[/] name handoff ids, --destination NAME or --all", highlight=False)
        raise typer.Exit(code=2)
    with opened_workspace(workspace) as ws:
        with session_scope(ws.engine) as session:
            count = redrive(session, now=utcnow(), ids=ids or (), destination=destination, notifications=notifications)
    console.print(f"re-queued {count} dead letter(s); `leadflow run handoff` delivers them", highlight=False)


@handoff_app.command("enable")
def enable(
    name: Annotated[str, typer.Argument(help="The destination's name, as the run report shows it.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Switch a destination back on after its receiver answered 410 Gone (a changed URL does this too)."""
    from leadflow.handoff.destinations import enable as switch_on

    with opened_workspace(workspace) as ws:
        with session_scope(ws.engine) as session:
            was_off = switch_on(session, name)
    console.print(f"destination {name} enabled" if was_off else f"destination {name} was not disabled", highlight=False)
