"""`leadflow check`, `preview`, `explain` and `backtest`: look at the rules, the emails and the leads."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leadflow.cli.app import WorkspaceOption, app, console, fail
from leadflow.cli.workspace import opened_workspace, workspace_config, workspace_settings
from leadflow.leads.config.workspace import ConfigError, load_config


@app.command()
def check(workspace: WorkspaceOption = None) -> None:
    """Validate leadflow.yaml, render every nurture email, and check what a run needs: key, files, secrets, mail URL."""
    settings = workspace_settings(workspace)
    folder = settings.workspace
    config = workspace_config(settings)  # no database: a run's database problems are reported, not raised
    from leadflow.nurture.checks import check_templates, engagement_warnings

    problems = check_templates(config, settings.config_file.parent / config.templates_dir)
    from leadflow.handoff.checks import check_notify_urls

    problems += check_notify_urls(config.handoff, settings.secrets)
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
    workspace: WorkspaceOption = None,
) -> None:
    """Show one email of a sequence as it would be sent: subject, text part and HTML part."""
    from leadflow.cli.preview import PreviewRequest, run_preview

    settings = workspace_settings(workspace)
    request = PreviewRequest(sequence=sequence, step=step, lead=lead, html_out=html_out)
    try:
        if lead is None:  # a sample lead: no database needed
            run_preview(console, settings, workspace_config(settings), request)
        else:
            with opened_workspace(workspace, settings=settings) as ws:
                run_preview(console, ws.settings, ws.config, request, engine=ws.engine)
    except ValueError as exc:  # PreviewError: unknown sequence, step or lead, or a template error
        raise fail(str(exc)) from None


@app.command()
def explain(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    workspace: WorkspaceOption = None,
    as_of: Annotated[datetime | None, typer.Option(help="Explain as of this UTC time (default: now).")] = None,
) -> None:
    """Why a lead stands where it does: score parts, rules and events, what it still lacks."""
    from leadflow.leads.db.engine import session_scope
    from leadflow.leads.db.models import utcnow
    from leadflow.leads.requalify.explain import LeadNotFound, explain_lead, render_text

    with opened_workspace(workspace) as ws:
        try:
            with session_scope(ws.engine) as session:
                explanation = explain_lead(session=session, config=ws.config, email=email, now=as_of or utcnow())
                console.print(render_text(explanation), highlight=False, markup=False, soft_wrap=True)
        except LeadNotFound as exc:
            raise fail(str(exc)) from None


@app.command()
def backtest(
    workspace: WorkspaceOption = None,
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
        other = load_config(compare) if compare is not None else None
    except ConfigError as exc:
        raise fail(str(exc)) from None
    request = BacktestRequest(outcomes=outcomes, as_of=as_of, split=split, compare=compare, store=store)
    with opened_workspace(workspace, settings=settings) as ws:
        try:
            report, stored = backtest_workspace(ws, other, request)
        except (OutcomesError, BacktestError) as exc:
            raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report_as_json(report, stored), indent=2))
    else:
        print_backtest(console, report, stored)
