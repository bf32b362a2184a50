"""`leadflow status`, `db upgrade`, `deploy`, `serve` and `web`: see the funnel and run leadflow as a service."""

from __future__ import annotations

from typing import Annotated

import typer

from leadflow.cli.app import WorkspaceOption, app, console, fail
from leadflow.cli.workspace import opened_workspace, workspace_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(workspace: WorkspaceOption = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from leadflow.leads.db.engine import current_revision

    with opened_workspace(workspace) as ws:  # opening migrates
        console.print(f"database at revision {current_revision(ws.engine)}")


@app.command()
def status(workspace: WorkspaceOption = None) -> None:
    """Where leads stand: counts per stage, outboxes and quarantine."""
    from leadflow.cli.summary import print_status

    with opened_workspace(workspace) as ws:
        print_status(console, ws)


@app.command()
def deploy(
    pool: Annotated[
        str, typer.Option(help="The work pool (create it: prefect work-pool create leadflow --type process).")
    ] = "leadflow",
    workspace: WorkspaceOption = None,
    pipeline_schedule: Annotated[
        bool,
        typer.Option("--pipeline-schedule", help="Run the nightly pipeline instead of the four steps' schedules."),
    ] = False,
    name: Annotated[list[str] | None, typer.Option("--name", "-n", help="Only this deployment (repeatable).")] = None,
) -> None:
    """Create or update every deployment on a work pool, for workers (`prefect worker start --pool leadflow`)."""
    from leadflow.cli.ops import deploy as deploy_all

    for deployed in deploy_all(pool, workspace, pipeline_schedule, name):
        console.print(f"deployed {deployed} on work pool {pool}", highlight=False)


@app.command()
def serve(
    workspace: WorkspaceOption = None,
    pipeline_schedule: Annotated[
        bool,
        typer.Option("--pipeline-schedule", help="Run the nightly pipeline instead of the four steps' schedules."),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Flow runs at most at once in this process.")] = None,
) -> None:
    """Serve every deployment (schedules, UI runs) from this one process: the single-machine install."""
    from leadflow.cli.ops import serve as serve_all

    serve_all(workspace_settings(workspace).workspace, pipeline_schedule, limit)  # each run opens it


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1 behind a reverse proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve the public endpoint: unsubscribe pages, click tracking and signed inbound events."""
    import uvicorn

    from leadflow.web.app import WebConfigError, create_app

    with opened_workspace(workspace) as ws:  # validated and migrated; the app keeps an engine of its own
        try:
            application = create_app(ws.settings, config=ws.config)
        except WebConfigError as exc:
            raise fail(str(exc)) from None
    console.print(f"serving {ws.settings.public_base_url} on http://{host}:{port}", highlight=False)
    uvicorn.run(application, host=host, port=port, proxy_headers=True, server_header=False, log_level="info")
