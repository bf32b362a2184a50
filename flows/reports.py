"""Run reports published as Prefect artifacts: what each flow did, as tables and markdown.

The reports themselves are built by the domain code that knows the numbers (`leads/ingest/report.py`,
`leads/requalify/report.py`, `nurture/report.py`, `handoff/report.py`); this module only renders them.
Artifacts have stable keys, so each report builds a history in the Prefect UI and an admin sees
what happened without reading logs.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from leadflow.handoff.report import HandoffRunReport
from leadflow.leads.ingest.report import IngestReport
from leadflow.leads.requalify.report import RequalifyReport
from leadflow.leads.work.problems import Problem
from leadflow.nurture.report import NurtureReport


def problem_lines(problems: list[Problem]) -> list[str]:
    if not problems:
        return []
    return ["", '## Problems this run (the run ends "Completed with problems" or Failed)', ""] + [
        f"- {p}" for p in problems
    ]


def counts_line(title: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"- {title}: none"
    return f"- {title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _held_lines(held: dict[str, int]) -> list[str]:
    """Steps held because their templates fail: where the error is, and how many emails wait for the fix."""
    if not held:
        return ["- held (template errors): none"]
    return [
        "- **held until their template is fixed** (not sent, not failed; they go out on the first run after the fix):",
        *(f"  - `{where}`: {emails} email(s)" for where, emails in held.items()),
    ]


def publish_ingest(report: IngestReport) -> None:
    rows = [
        {"source": name, **c.model_dump(exclude={"quarantine_by_reason"}), "error": c.error or ""}
        for name, c in report.sources.items()
    ]
    create_table_artifact(
        key="leadflow-ingest",
        table=rows or [{"source": "(none configured)"}],
        description="Activity ingested per source this run",
    )
    per_source = [
        counts_line(f"{name}", c.quarantine_by_reason) for name, c in report.sources.items() if c.quarantine_by_reason
    ]
    failed = [f"- {name}: {error}" for name, error in report.failed.items()]
    create_markdown_artifact(
        key="leadflow-ingest-quarantine",
        markdown="# Quarantine this run\n\n"
        + counts_line("rejected records by reason", report.quarantine_by_reason)
        + ("\n\n## By source\n\n" + "\n".join(per_source) if per_source else "")
        + ("\n\n## Sources that stopped\n\n" + "\n".join(failed) if failed else "")
        + "\n\nRejected records are kept whole in the `quarantine` table with their location (file:line, or"
        " stream:record id) and reason.",
        description="Records rejected by ingest, by reason and source",
    )


def publish_requalify(report: RequalifyReport) -> None:
    rows = [m.model_dump() for m in report.moves] or [{"from_stage": "-", "to_stage": "-", "leads": 0}]
    create_table_artifact(
        key="leadflow-stage-changes",
        table=rows,
        description=f"Stage changes this run (rule set {report.ruleset_version})",
    )
    create_markdown_artifact(
        key="leadflow-requalify",
        markdown=(
            f"# Requalify\n\n- rule set: `{report.ruleset_version}` ({report.mode} run)\n- batches: {report.shards}\n"
            f"- leads scored: {report.leads}\n- scores changed: {report.rescored}\n- stage changes: {report.changed}\n"
            + (
                f"- round {report.round_id}: {report.shards} of its {report.round_shards} shards scored by this run"
                f"{' (joined a round another run planned)' if report.joined else ''}; the round: "
                f"{report.round_leads} leads scored by {report.round_workers} run(s)\n"
                if report.round_id is not None
                else ""
            )
        ),
    )


def publish_nurture(report: NurtureReport) -> None:
    if report.dry_run:
        publish_nurture_dry_run(report)
        return
    create_markdown_artifact(
        key="leadflow-nurture",
        markdown="\n".join(
            [
                "# Nurture",
                "",
                counts_line("enrolled", report.enrolled),
                counts_line("exited", report.exited),
                f"- queued: {report.queued}",
                f"- sent: {report.sent}",
                f"- unconfirmed (a sender died while handing them over; never sent again): {report.unconfirmed}",
                counts_line("skipped at send time", report.skipped),
                counts_line("deferred", report.deferred),
                counts_line("failed", report.failed),
                *_held_lines(report.held),
                *problem_lines(report.problems),
            ]
        ),
        description="Nurture sends this run",
    )


def publish_nurture_dry_run(report: NurtureReport) -> None:
    """A dry run's own keys, so its report never mixes with the history of real runs."""
    create_markdown_artifact(
        key="leadflow-nurture-dry-run",
        markdown="\n".join(
            [
                "# Nurture dry run (nothing was sent or stored)",
                "",
                counts_line("would enroll", report.enrolled),
                counts_line("would exit", report.exited),
                f"- would queue: {report.queued}",
                f"- would send: {report.would_send}",
                counts_line("would skip", report.skipped),
                counts_line("would defer", report.deferred),
                counts_line("would fail", report.failed),
                counts_line("would hold (template error; sent once it is fixed)", report.held),
                f"- in flight from a dead sender (would be settled as unconfirmed): {report.unconfirmed}",
            ]
        ),
        description="What a nurture run would do now",
    )
    rows = [{**p.model_dump(mode="json"), "until": p.until.isoformat() if p.until else ""} for p in report.preview]
    create_table_artifact(
        key="leadflow-nurture-dry-run-emails",
        table=rows or [{"email": "(none due)"}],
        description="Per lead: what would be sent, and why not"
        + (f" (first {len(rows)}; {report.preview_more} more)" if report.preview_more else ""),
    )


def publish_handoff(report: HandoffRunReport) -> None:
    scalars = {k: v for k, v in report.model_dump().items() if not isinstance(v, (dict, list))}
    create_table_artifact(key="leadflow-handoff", table=[scalars], description="SQLs handed to sales")
    rows = [{"destination": name, **c.model_dump(exclude={"error"}), "error": c.error or ""}
            for name, c in report.destinations.items()]  # fmt: skip
    if rows:
        create_table_artifact(
            key="leadflow-handoff-destinations", table=rows, description="SQLs handed to sales, per destination"
        )
    create_markdown_artifact(
        key="leadflow-handoff-owners",
        markdown=handoff_markdown(report),
        description="Handoffs by destination and owner, SLAs, notifications, dead letters",
    )


def handoff_markdown(report: HandoffRunReport) -> str:
    """The handoff run for admins and sales managers, including what needs a human."""
    lines = [
        "# Sales handoff",
        "",
        f"- queued: {report.queued}; delivered: {report.delivered}; to retry: {report.retried}; "
        f"dead-lettered this run: {report.dead}",
        counts_line(
            "delivered by destination", {n: c.delivered for n, c in report.destinations.items() if c.delivered}
        ),
        counts_line("delivered by owner", report.delivered_by_owner),
        counts_line("new SQLs assigned", report.assigned),
        f"- handed off without an owner (no territory matched): {report.unassigned}",
        f"- waiting for an owner with capacity: {report.waiting}",
        f"- SLAs met or closed: {report.sla_met}",
        counts_line("reassigned after a missed SLA (to)", report.reassigned),
        counts_line("escalated to a manager (team)", report.escalated),
        counts_line("notifications sent", report.notified),
        f"- notifications to retry: {report.notify_retried}; dead: {report.notify_dead}; "
        f"nobody to notify: {report.notify_skipped}",
    ]
    if report.dead_letters:
        lines += ["", "## Dead letters (re-drive with `leadflow handoff retry`)", ""]
        lines += [f"- {name}: {count}" for name, count in sorted(report.dead_letters.items())]
    if report.disabled:
        lines += ["", "## Disabled destinations (`leadflow handoff enable NAME`)", ""]
        lines += [f"- {name}: {why}" for name, why in sorted(report.disabled.items())]
    if report.started:
        lines += ["", "## New destinations", ""]
        lines += [f"- {message}" for _, message in sorted(report.started.items())]
    backlog = [
        f"- {name}: {c.backlog}" + (f" ({c.stopped})" if c.stopped else "")
        for name, c in report.destinations.items()
        if c.backlog
    ]
    if report.notify_backlog:
        backlog.append(
            f"- notifications: {report.notify_backlog}"
            + (f" ({report.notify_stopped})" if report.notify_stopped else "")
        )
    if backlog:
        lines += ["", "## Not delivered yet (the next run goes on with them)", "", *backlog]
    return "\n".join(lines + problem_lines(report.problems))
