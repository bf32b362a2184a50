"""The `leadflow` command: set up a workspace, run flows, check config, see where leads stand."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from leadflow.cli.output import one_line, quiet_prefect_console, set_verbose, verbose
from leadflow.cli.workspace import errors, workspace_settings
from leadflow.cli.workspace_setup import SecretKeyMissing, ensure_demo_data, init_workspace
from leadflow.demo.data import MAX_DEMO_LEADS
from leadflow.leads.config.workspace import ConfigError, load_config


class _App(typer.Typer):
    """The `leadflow` command: an unexpected error is one line naming its cause; --verbose shows the traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if verbose():
                raise
            errors.print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            errors.print("Rerun with --verbose (or LEADFLOW_VERBOSE=1) for the traceback.", highlight=False)
            sys.exit(1)


app = _App(
    help="leadflow: lead scoring, nurture and sales handoff on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold secrets
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
from leadflow.cli.handoff import handoff_app  # noqa: E402  (the `leadflow handoff` commands)

app.add_typer(handoff_app, name="handoff")
from leadflow.cli.ops import ops_app  # noqa: E402  (after the app it joins)

app.add_typer(ops_app, name="ops")
console = Console()

Workspace = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder (default: current).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's run logs and full tracebacks.")]


@app.callback()
def _options(verbose: Verbose = False) -> None:
    """leadflow: lead scoring, nurture and sales handoff on Prefect."""
    set_verbose(verbose)


class FlowName(StrEnum):
    pipeline = "pipeline"
    ingest = "ingest"
    requalify = "requalify"
    nurture = "nurture"
    handoff = "handoff"


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


@app.command()
def init(workspace: Workspace = None) -> None:
    """Create leadflow.yaml, templates/ and a secret key in the workspace (never overwrites)."""
    folder = (workspace or Path(".")).resolve()
    created = _init(folder)
    console.print(f"workspace ready in {folder}" if created else f"nothing to do: {folder} is already a workspace")


@app.command()
def demo(
    workspace: Workspace = None,
    leads: Annotated[int, typer.Option(help="How many demo leads to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same leads.")] = 7,
    verbose: Verbose = False,
) -> None:
    """Set up a demo workspace here, run the whole pipeline once and show what happened."""
    set_verbose(verbose)
    if not 1 <= leads <= MAX_DEMO_LEADS:
        raise _fail(
            f"--leads {leads}: the demo makes 1 to {MAX_DEMO_LEADS:,} leads (it holds them all in memory, "
            "about 20 KB each); for scale tests use bench/ (e.g. python bench/requalify_bench.py --leads 1000000)"
        )
    folder = (workspace or Path(".")).resolve()
    _init(folder)
    if leads >= 10_000 and not (folder / "data" / "activity.jsonl").exists():  # say so before a minute's silence
        console.print(f"generating {leads:,} demo leads (about a second per thousand) …", highlight=False)
    generated = ensure_demo_data(folder, seed=seed, leads=leads)
    if generated:
        console.print(f"generated {leads} demo leads with 90 days of activity in {generated.relative_to(folder)}")
    report = _run_flow(FlowName.pipeline, folder)
    from leadflow.cli.summary import print_pipeline_summary

    print_pipeline_summary(console, folder, report)


@app.command()
def run(
    flow: Annotated[FlowName, typer.Argument(help="Which flow to run.")] = FlowName.pipeline,
    workspace: Workspace = None,
    verbose: Verbose = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="nurture only: what would be sent and why not; sends and stores nothing.")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            min=1,
            max=32,
            help="requalify and pipeline: processes scoring shards side by side (default: one per core, at most 4).",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bars for ingest, requalify and sending (default: when the output is a terminal).",
        ),
    ] = None,
) -> None:
    """Run one flow (default: the whole pipeline) against the workspace."""
    set_verbose(verbose)
    folder = workspace_settings(workspace).workspace
    if dry_run and flow != FlowName.nurture:
        raise _fail("--dry-run applies to the nurture flow: leadflow run nurture --dry-run")
    if processes is not None and flow not in (FlowName.requalify, FlowName.pipeline):
        raise _fail("--processes applies to the requalify and pipeline flows")
    params: dict[str, Any] = {"dry_run": True} if dry_run else {}
    if processes is not None:
        params["processes"] = processes
    from leadflow.cli.progress import progress_bars

    with progress_bars(console, show=progress):
        report = _run_flow(flow, folder, **params)
    from leadflow.cli.summary import print_flow_summary, print_pipeline_summary

    if dry_run:
        from leadflow.cli.dry_run import print_dry_run

        print_dry_run(console, report)
    elif flow == FlowName.pipeline:
        print_pipeline_summary(console, folder, report)
    else:
        print_flow_summary(console, flow.value, report)
    _exit_on_problems(getattr(report, "problems", None) or [])


def _exit_on_problems(problems: list[Any]) -> None:
    """A run that finished but not all well ("Completed with problems" in Prefect) says what and exits 3."""
    if not problems:
        return
    console.print()
    console.print(f"[bold yellow]completed with problems[/] ({len(problems)}):", highlight=False)
    for problem in problems:
        console.print(f"  - {escape(str(problem))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=3)


def _init(folder: Path) -> list[str]:
    """`init_workspace`, telling the user what it made; a key that must be restored, not remade, stops here."""
    try:
        created = init_workspace(folder)
    except SecretKeyMissing as exc:
        for item in exc.created:
            console.print(f"created {item}")
        raise _fail(str(exc)) from None
    for item in created:
        console.print(f"created {item}")
    return created


def _run_flow(flow: FlowName, folder: Path, **params: Any) -> Any:
    settings = workspace_settings(folder)
    try:
        load_config(settings.config_file)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from leadflow.flows import registry

    quiet_prefect_console()

    try:
        return registry.run(flow.value, str(folder), **params)
    except Exception as exc:  # the run's own report and logs are in Prefect; say what failed, briefly
        from leadflow.cli.prefect_env import ephemeral_timeout_hint

        if hint := ephemeral_timeout_hint(exc):
            raise _fail(hint) from None
        report = getattr(exc, "report", None)
        if flow == FlowName.pipeline and report is not None:  # it went on past a failing source: show what it did
            from leadflow.cli.summary import print_pipeline_summary

            print_pipeline_summary(console, folder, report)
            console.print()
        console.print(f"[bold red]the {flow.value} run failed:[/] {exc}", highlight=False)
        console.print("Rerun with --verbose for Prefect's log, or open the run in the Prefect UI.")
        raise typer.Exit(code=1) from None


@app.command()
def check(workspace: Workspace = None) -> None:
    """Validate leadflow.yaml, render every nurture email, and check what a run needs: key, files, secrets, mail URL."""
    settings = workspace_settings(workspace)
    folder = settings.workspace
    try:
        config = load_config(settings.config_file)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from leadflow.nurture.checks import check_templates, engagement_warnings

    problems = check_templates(config, settings.config_file.parent / config.templates_dir)
    from leadflow.cli.handoff import notify_problems

    problems += notify_problems(config, folder)
    from leadflow.cli.preflight import run_problems

    problems += run_problems(settings, config)
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem.replace(str(folder) + '/', ''))}", highlight=False, soft_wrap=True)
    for warning in engagement_warnings(config, track_opens=settings.track_opens):
        console.print(f"[yellow]![/] {warning}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(code=1)
    steps = sum(len(s.steps) for s in config.nurture.sequences)
    console.print(
        f"[green]✓[/] {settings.config_file.name} is valid; {steps} email step(s) render cleanly; "
        "the secret key, sources, handoff secrets, mail URL and database are ready for a run"
    )


@app.command()
def preview(
    sequence: Annotated[str, typer.Argument(help="The sequence's name.")],
    step: Annotated[str, typer.Argument(help="The step: its id, its template, or its number (1 = first).")],
    lead: Annotated[
        str | None, typer.Option("--lead", help="Render for this lead from the database (default: a sample lead).")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML part to this file, to open in a browser.")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """Show one email of a sequence as it would be sent: subject, text part and HTML part."""
    from leadflow.cli.preview import run_preview

    settings = workspace_settings(workspace)
    try:
        config = load_config(settings.config_file)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    try:
        run_preview(console, settings, config, sequence=sequence, step=step, lead=lead, html_out=html_out)
    except ValueError as exc:  # PreviewError: unknown sequence, step or lead, or a template error
        raise _fail(str(exc)) from None


@app.command()
def explain(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    workspace: Workspace = None,
    as_of: Annotated[datetime | None, typer.Option(help="Explain as of this UTC time (default: now).")] = None,
) -> None:
    """Why a lead stands where it does: score parts, rules and events, what it still lacks."""
    from leadflow.leads.db.engine import make_engine, session_scope, upgrade
    from leadflow.leads.db.models import utcnow
    from leadflow.leads.requalify.explain import LeadNotFound, explain_lead, render_text

    settings = workspace_settings(workspace)
    try:
        config = load_config(settings.config_file)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    try:
        with session_scope(engine) as session:
            explanation = explain_lead(session=session, config=config, email=email, now=as_of or utcnow())
            console.print(render_text(explanation), highlight=False, markup=False, soft_wrap=True)
    except LeadNotFound as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()


@app.command()
def backtest(
    workspace: Workspace = None,
    outcomes: Annotated[
        Path | None, typer.Option(help="CSV of email,outcome,decided_at (default: data/outcomes.csv, else CRM deals).")
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option(help="Evaluate as of this UTC time (default: latest activity).")
    ] = None,
    split: Annotated[datetime | None, typer.Option(help="Leads first seen before this UTC time train.")] = None,
    compare: Annotated[
        Path | None, typer.Option(help="Another leadflow.yaml whose rules to show side by side.")
    ] = None,
    store: Annotated[
        bool | None, typer.Option("--store/--no-store", help="Store the naive-Bayes probability on every lead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay the history under the rules and hold them against won and lost deals, beside a learned baseline."""
    from leadflow.cli.backtest import BacktestRequest, backtest_workspace, print_backtest, report_as_json
    from leadflow.leads.backtest.outcomes import OutcomesError
    from leadflow.leads.backtest.replay import BacktestError

    settings = workspace_settings(workspace)
    try:
        config = load_config(settings.config_file)
        other = load_config(compare) if compare is not None else None
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    request = BacktestRequest(outcomes=outcomes, as_of=as_of, split=split, compare=compare, store=store)
    try:
        report, stored = backtest_workspace(settings, config, other, request)
    except (OutcomesError, BacktestError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report_as_json(report, stored), indent=2))
    else:
        print_backtest(console, report, stored)


@db_app.command("upgrade")
def db_upgrade(workspace: Workspace = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from leadflow.leads.db.engine import current_revision, make_engine, upgrade

    settings = workspace_settings(workspace)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    console.print(f"database at revision {current_revision(engine)}")
    engine.dispose()


@app.command()
def status(workspace: Workspace = None) -> None:
    """Where leads stand: counts per stage, outboxes and quarantine."""
    from leadflow.cli.summary import print_status

    print_status(console, workspace_settings(workspace).workspace)


@app.command()
def deploy(
    pool: Annotated[
        str, typer.Option(help="The work pool (create it: prefect work-pool create leadflow --type process).")
    ] = "leadflow",
    workspace: Workspace = None,
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
    workspace: Workspace = None,
    pipeline_schedule: Annotated[
        bool,
        typer.Option("--pipeline-schedule", help="Run the nightly pipeline instead of the four steps' schedules."),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Flow runs at most at once in this process.")] = None,
) -> None:
    """Serve every deployment (schedules, UI runs) from this one process: the single-machine install."""
    from leadflow.cli.ops import serve as serve_all

    workspace = workspace_settings(workspace).workspace
    serve_all(workspace, pipeline_schedule, limit)


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1 behind a reverse proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workspace: Workspace = None,
) -> None:
    """Serve the public endpoint: unsubscribe pages, click tracking and signed inbound events."""
    import uvicorn

    from leadflow.leads.db.engine import make_engine, upgrade
    from leadflow.web.app import WebConfigError, create_app

    settings = workspace_settings(workspace)
    try:
        application = create_app(settings)
    except (ConfigError, WebConfigError) as exc:
        raise _fail(str(exc)) from None
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    engine.dispose()
    console.print(f"serving {settings.public_base_url} on http://{host}:{port}", highlight=False)
    uvicorn.run(application, host=host, port=port, proxy_headers=True, server_header=False, log_level="info")


if __name__ == "__main__":
    app()
