"""What the CLI prints after a run: a summary a marketer can read, and pointers to look further."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlmodel import col

from leadflow.leads.db.models import FUNNEL, EmailOutbox, HandoffOutbox, Lead, OutboxStatus, Quarantine, Stage
from leadflow.leads.workspace import Workspace

STAGE_LABELS = {
    Stage.suspect: "suspect",
    Stage.prospect: "prospect",
    Stage.hot_prospect: "hot prospect",
    Stage.mql: "MQL",
    Stage.sql: "SQL",
    Stage.customer: "customer",
    Stage.disqualified: "disqualified",
    Stage.recycled: "recycled",
}


def _stage_counts(engine: Engine) -> tuple[dict[str, int], dict[str, int], dict[str, int], int]:
    with engine.connect() as conn:
        stage, email, handoff = col(Lead.stage), col(EmailOutbox.status), col(HandoffOutbox.status)
        stages = {str(k): n for k, n in conn.execute(select(stage, func.count()).group_by(stage)).tuples()}
        emails = {str(k): n for k, n in conn.execute(select(email, func.count()).group_by(email)).tuples()}
        handoffs = {str(k): n for k, n in conn.execute(select(handoff, func.count()).group_by(handoff)).tuples()}
        quarantined = conn.execute(select(func.count()).select_from(Quarantine)).scalar_one()
    return stages, emails, handoffs, quarantined


def _label(stage: str) -> str:
    try:
        return STAGE_LABELS[Stage(stage)]
    except ValueError:
        return stage


def print_pipeline_summary(console: Console, ws: Workspace, report: Any) -> None:
    """What the run did and where leads stand now, from the workspace the run used."""
    stages, emails, handoffs, quarantined = _stage_counts(ws.engine)
    folder, settings = ws.folder, ws.settings
    console.print()
    console.rule("[bold]leadflow run summary")

    funnel = Table(title="Leads by stage", title_justify="left")
    funnel.add_column("stage")
    funnel.add_column("leads", justify="right")
    for stage in [*FUNNEL, Stage.recycled, Stage.disqualified]:
        if stage in FUNNEL or stages.get(stage.value):
            funnel.add_row(_label(stage.value), str(stages.get(stage.value, 0)))
    funnel.add_row("[bold]total", f"[bold]{sum(stages.values())}")
    console.print(funnel)

    moves = report.requalify.moves
    if moves:
        changes = Table(
            title=f"Stage changes in this run (rule set {report.requalify.ruleset_version})", title_justify="left"
        )
        changes.add_column("from")
        changes.add_column("to")
        changes.add_column("leads", justify="right")
        for move in sorted(moves, key=lambda m: -m.leads):
            changes.add_row(_label(move.from_stage), _label(move.to_stage), str(move.leads))
        console.print(changes)
    else:
        console.print("Stage changes in this run: none")

    ingest = report.ingest
    new_events = sum(c.inserted for c in ingest.sources.values())
    new_leads = sum(c.new_leads for c in ingest.sources.values())
    console.print(
        f"\n[bold]Activity[/]: {new_events} new events, {new_leads} new leads"
        + (f", {sum(ingest.quarantine_by_reason.values())} records quarantined" if ingest.quarantine_by_reason else "")
    )
    for name, why in ingest.failed.items():
        console.print(f"  [red]source {name} stopped[/]: {why}", soft_wrap=True, highlight=False)
    nurture = report.nurture
    skipped = sum(nurture.skipped.values())
    console.print(
        f"[bold]Nurture[/]: {nurture.sent} emails sent this run"
        f" ({sum(nurture.enrolled.values())} leads enrolled, {sum(nurture.exited.values())} left a sequence"
        + (f", {skipped} held back at send time" if skipped else "")
        + (f", {sum(nurture.deferred.values())} waiting" if nurture.deferred else "")
        + (f", {nurture.unconfirmed} unconfirmed" if nurture.unconfirmed else "")
        + ")"
    )
    for where, count in nurture.held.items():  # a template error: these wait for the fix, none are lost
        console.print(
            f"  [red]held[/] {count} email(s) until the template is fixed: {escape(where)}",
            soft_wrap=True,
            highlight=False,
        )
    per_destination = report.handoff.destinations
    console.print(
        f"[bold]Sales handoff[/]: {report.handoff.delivered} new SQLs handed to sales"
        + (f", {report.handoff.retried} to retry" if report.handoff.retried else "")
        + (
            " (" + ", ".join(f"{name} {c.delivered}" for name, c in per_destination.items()) + ")"
            if len(per_destination) > 1
            else ""
        )
    )
    _print_owners(console, report.handoff)
    console.print(
        f"[dim]All time: {emails.get(OutboxStatus.sent.value, 0)} emails sent, "
        f"{handoffs.get(OutboxStatus.sent.value, 0)} SQLs handed off, {quarantined} records in quarantine.[/]"
    )

    console.print("\n[bold]Where to look next[/]")
    pointers = []
    if settings.mail_url.startswith("file:"):
        pointers.append(f"the emails: {folder / 'outbox'}/ (.eml files open in any mail program)")
    pointers.append(f"the SQLs for sales: {folder / 'handoff-inbox'}/ (one JSON file each, with the reasons)")
    example = _an_sql_email(ws.engine)
    if example:
        pointers.append(f"why a lead stands where it does: `leadflow explain {example}`")
    pointers += [
        "how well the stages predict won deals: `leadflow backtest`",
        "the rules: leadflow.yaml (then `leadflow run requalify`); email text: templates/",
        "`leadflow status` for the funnel at any time; `leadflow run` again handles only what is new",
        "the runs in the Prefect UI: `prefect server start`, then see the README's 'Watching runs'",
    ]
    for pointer in pointers:  # unwrapped, so paths and commands can be copied whole
        console.print(f"  • {pointer}", soft_wrap=True, highlight=False)


def _print_owners(console: Console, handoff: Any) -> None:
    """Who got the new SQLs, and anything that needs an admin (dead letters, a disabled or a new destination)."""
    if handoff.assigned:
        owners = ", ".join(f"{owner} {n}" for owner, n in sorted(handoff.assigned.items()))
        console.print(
            f"  new SQLs by owner: {owners}" + (f"; {handoff.waiting} waiting for capacity" if handoff.waiting else "")
        )
    if handoff.dead_letters:
        console.print(
            f"  [red]{sum(handoff.dead_letters.values())} dead letter(s)[/]: `leadflow handoff status`, then "
            "`leadflow handoff retry --all`",
            highlight=False,
        )
    for name, why in handoff.disabled.items():
        console.print(f"  [red]destination {name} is off[/] ({why}): `leadflow handoff enable {name}`", highlight=False)
    for message in handoff.started.values():
        console.print(f"  {message}", soft_wrap=True, highlight=False)


def _an_sql_email(engine: Engine) -> str | None:
    """One real SQL to point the reader at, so the explain example is copy-and-paste."""
    with engine.connect() as conn:
        query = select(col(Lead.email)).where(col(Lead.stage) == Stage.sql.value).order_by(col(Lead.score).desc())
        return conn.execute(query.limit(1)).scalar_one_or_none()


def print_flow_summary(console: Console, name: str, report: Any) -> None:
    """What one flow (`leadflow run ingest|requalify|nurture|handoff`) did, in the pipeline summary's words."""
    console.print()
    console.rule(f"[bold]leadflow {name} summary")
    if name == "ingest":
        _print_ingest(console, report)
    elif name == "requalify":
        _print_requalify(console, report)
    elif name == "nurture":
        _print_nurture(console, report)
    elif name == "handoff":
        _print_handoff(console, report)


def _print_ingest(console: Console, report: Any) -> None:
    table = Table(title="Sources", title_justify="left")
    for column in ("source", "new events", "duplicates", "new leads", "quarantined"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, c in report.sources.items():
        table.add_row(name, str(c.inserted), str(c.duplicates), str(c.new_leads), str(c.quarantined))
    console.print(table)
    for name, why in report.failed.items():
        console.print(f"  [red]source {name} stopped[/]: {escape(why)}", soft_wrap=True, highlight=False)
    new_events = sum(c.inserted for c in report.sources.values())
    new_leads = sum(c.new_leads for c in report.sources.values())
    quarantined = sum(report.quarantine_by_reason.values())
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(report.quarantine_by_reason.items()))
    console.print(
        f"[bold]Activity[/]: {new_events} new events, {new_leads} new leads, {quarantined} records quarantined"
        + (f" ({reasons})" if quarantined else ""),
        highlight=False,
    )
    if quarantined:
        console.print("  the quarantined records and why: `leadflow ops dead-letters`", highlight=False)


def _print_requalify(console: Console, report: Any) -> None:
    console.print(
        f"[bold]Requalified[/]: {report.leads} leads ({report.rescored} rescored, rule set {report.ruleset_version})",
        highlight=False,
    )
    if not report.moves:
        console.print("Stage changes in this run: none")
        return
    changes = Table(title="Stage changes in this run", title_justify="left")
    for column in ("from", "to", "leads"):
        changes.add_column(column, justify="right" if column == "leads" else "left")
    for move in sorted(report.moves, key=lambda m: -m.leads):
        changes.add_row(_label(move.from_stage), _label(move.to_stage), str(move.leads))
    console.print(changes)


def _print_nurture(console: Console, report: Any) -> None:
    failed = sum(report.failed.values())
    console.print(
        f"[bold]Nurture[/]: {report.sent} emails sent this run ({sum(report.enrolled.values())} leads enrolled, "
        f"{sum(report.exited.values())} left a sequence, {report.queued} steps queued)",
        highlight=False,
    )
    for label, counts in (("failed", report.failed), ("held back at send time", report.skipped),
                          ("waiting", report.deferred)):  # fmt: skip
        if counts:
            detail = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
            colour = "red" if label == "failed" else "yellow"
            console.print(f"  [{colour}]{sum(counts.values())} {label}[/]: {escape(detail)}", highlight=False)
    if report.unconfirmed:
        console.print(f"  {report.unconfirmed} unconfirmed (may have arrived; never sent again)", highlight=False)
    if failed:
        console.print("  the failed emails: `leadflow ops dead-letters`", highlight=False)
    if report.outbox:
        console.print(f"  sent through {report.outbox}", highlight=False)


def _print_handoff(console: Console, report: Any) -> None:
    console.print(
        f"[bold]Sales handoff[/]: {report.delivered} new SQLs handed to sales"
        + (f", {report.retried} to retry" if report.retried else "")
        + (f", {report.dead} dead-lettered" if report.dead else ""),
        highlight=False,
    )
    for name, c in report.destinations.items():
        line = f"  {name}: {c.delivered} handed off of {c.queued} queued"
        console.print(line + (f" [red]stopped: {escape(c.error)}[/]" if c.error else ""), highlight=False)
    _print_owners(console, report)


def print_status(console: Console, ws: Workspace) -> None:
    stages, emails, handoffs, quarantined = _stage_counts(ws.engine)
    table = Table(title="Leads by stage", title_justify="left")
    table.add_column("stage")
    table.add_column("leads", justify="right")
    for stage in Stage:
        if stage in FUNNEL or stages.get(stage.value):
            table.add_row(_label(stage.value), str(stages.get(stage.value, 0)))
    console.print(table)
    console.print("emails: " + (", ".join(f"{k} {v}" for k, v in sorted(emails.items())) or "none"))
    console.print("handoffs: " + (", ".join(f"{k} {v}" for k, v in sorted(handoffs.items())) or "none"))
    console.print(f"quarantined records: {quarantined}")
