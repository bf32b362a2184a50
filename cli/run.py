"""`leadflow init`, `demo` and `run`: set up a workspace and run flows in it, then say what happened."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from leadflow.cli.app import VerboseOption, WorkspaceOption, app, console, fail
from leadflow.cli.output import quiet_prefect_console, set_verbose
from leadflow.cli.workspace import opened_workspace, workspace_settings
from leadflow.cli.workspace_setup import SecretKeyMissing, ensure_demo_data, init_workspace
from leadflow.demo.data import MAX_DEMO_LEADS
from leadflow.leads.workspace import Workspace


class FlowName(StrEnum):
    pipeline = "pipeline"
    ingest = "ingest"
    requalify = "requalify"
    nurture = "nurture"
    handoff = "handoff"


@app.command()
def init(workspace: WorkspaceOption = None) -> None:
    """Create leadflow.yaml, templates/ and a secret key in the workspace (never overwrites)."""
    folder = (workspace or Path(".")).resolve()
    created = _init(folder)
    console.print(f"workspace ready in {folder}" if created else f"nothing to do: {folder} is already a workspace")


@app.command()
def demo(
    workspace: WorkspaceOption = None,
    leads: Annotated[int, typer.Option(help="How many demo leads to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same leads.")] = 7,
    verbose: VerboseOption = False,
) -> None:
    """Set up a demo workspace here, run the whole pipeline once and show what happened."""
    set_verbose(verbose)
    if not 1 <= leads <= MAX_DEMO_LEADS:
        raise fail(
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
    with opened_workspace(folder) as ws:
        report = _run_flow(FlowName.pipeline, ws)
        from leadflow.cli.summary import print_pipeline_summary

        print_pipeline_summary(console, ws, report)


@app.command()
def run(
    flow: Annotated[FlowName, typer.Argument(help="Which flow to run.")] = FlowName.pipeline,
    workspace: WorkspaceOption = None,
    verbose: VerboseOption = False,
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
    settings = workspace_settings(workspace)
    if dry_run and flow != FlowName.nurture:
        raise fail("--dry-run applies to the nurture flow: leadflow run nurture --dry-run")
    if processes is not None and flow not in (FlowName.requalify, FlowName.pipeline):
        raise fail("--processes applies to the requalify and pipeline flows")
    params: dict[str, Any] = {"dry_run": True} if dry_run else {}
    if processes is not None:
        params["processes"] = processes
    with opened_workspace(workspace, settings=settings) as ws:
        from leadflow.cli.progress import progress_bars

        with progress_bars(console, show=progress):
            report = _run_flow(flow, ws, **params)
        from leadflow.cli.summary import print_flow_summary, print_pipeline_summary

        if dry_run:
            from leadflow.cli.dry_run import print_dry_run

            print_dry_run(console, report)
        elif flow == FlowName.pipeline:
            print_pipeline_summary(console, ws, report)
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
        raise fail(str(exc)) from None
    for item in created:
        console.print(f"created {item}")
    return created


def _run_flow(flow: FlowName, ws: Workspace, **params: Any) -> Any:
    """Run a flow in this process, in the command's workspace; a failed run says what failed and exits 1."""
    from leadflow.flows import registry

    quiet_prefect_console()

    try:
        return registry.run(flow.value, ws, **params)
    except Exception as exc:  # the run's own report and logs are in Prefect; say what failed, briefly
        from leadflow.cli.prefect_env import ephemeral_timeout_hint

        if hint := ephemeral_timeout_hint(exc):
            raise fail(hint) from None
        report = getattr(exc, "report", None)
        if flow == FlowName.pipeline and report is not None:  # it went on past a failing source: show what it did
            from leadflow.cli.summary import print_pipeline_summary

            print_pipeline_summary(console, ws, report)
            console.print()
        console.print(f"[bold red]the {flow.value} run failed:[/] {exc}", highlight=False)
        console.print("Rerun with --verbose for Prefect's log, or open the run in the Prefect UI.")
        raise typer.Exit(code=1) from None
