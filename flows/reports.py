"""Run reports: what each flow did, returned to the caller and published as Prefect artifacts.

Artifacts have stable keys, so each report builds a history in the Prefect UI and an admin sees
what happened without reading logs.
"""

from __future__ import annotations

from datetime import datetime

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from leadflow.flows.problems import Problem


class SourceCounts(BaseModel):
    kind: str = "file"
    streams: int = 0  # files of a file source, objects or event feeds of a CRM
    pages: int = 0
    inserted: int = 0
    duplicates: int = 0
    new_leads: int = 0
    profiles: int = 0  # leads whose profile or CRM id a CRM record changed
    skipped: int = 0  # vendor records that map to nothing on purpose (an email "sent" event, say)
    quarantined: int = 0
    quarantine_by_reason: dict[str, int] = Field(default_factory=dict)
    error: str | None = None  # why the source stopped, if it did (what it stored before stays stored)


class IngestReport(BaseModel):
    sources: dict[str, SourceCounts] = Field(default_factory=dict)
    quarantine_by_reason: dict[str, int] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        return {name: c.error for name, c in self.sources.items() if c.error}


class StageMove(BaseModel):
    from_stage: str
    to_stage: str
    leads: int


class RequalifyReport(BaseModel):
    ruleset_version: str
    mode: str = "full"
    shards: int = 0
    leads: int = 0
    rescored: int = 0
    moves: list[StageMove] = Field(default_factory=list)
    round_id: int | None = None  # the shared round this run worked on (see leads/work/claims.py)
    round_shards: int = 0  # shards in that round, across every worker
    joined: bool = False  # True: another run planned the round and this one helped
    round_leads: int = 0  # leads scored in the whole round so far, by every worker
    round_workers: int = 0  # runs that scored shards of the round

    @property
    def changed(self) -> int:
        return sum(m.leads for m in self.moves)


class PreviewEmail(BaseModel):
    """One email in a dry run: what would happen to it and why."""

    email: str
    sequence: str
    step: int
    outcome: str  # send, skip, defer, fail
    reason: str = ""
    subject: str = ""
    until: datetime | None = None


class NurtureReport(BaseModel):
    enrolled: dict[str, int] = Field(default_factory=dict)
    exited: dict[str, int] = Field(default_factory=dict)
    queued: int = 0
    sent: int = 0
    unconfirmed: int = 0  # left in flight by a sender that died: may have arrived, never sent again
    skipped: dict[str, int] = Field(default_factory=dict)
    deferred: dict[str, int] = Field(default_factory=dict)
    failed: dict[str, int] = Field(default_factory=dict)
    held: dict[str, int] = Field(default_factory=dict)  # emails waiting for a template fix, by where the error is
    outbox: str = ""
    dry_run: bool = False
    would_send: int = 0  # dry run only
    preview: list[PreviewEmail] = Field(default_factory=list)  # dry run only: the first emails, per lead
    preview_more: int = 0  # dry run only: emails beyond the listed ones
    problems: list[Problem] = Field(default_factory=list)


class DestinationCounts(BaseModel):
    kind: str
    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    error: str | None = None
    backlog: int = 0  # not delivered yet after this run: queued, waiting for a retry, or being sent
    stopped: str | None = None  # why this run left due rows for the next one


class HandoffRunReport(BaseModel):
    destination: str
    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0  # dead-lettered this run
    destinations: dict[str, DestinationCounts] = {}
    # Owners, SLA, notifications and dead letters (handoff/assignment.py, sla.py, notify.py, deadletters.py)
    delivered_by_owner: dict[str, int] = Field(default_factory=dict)  # "-": no owner
    assigned: dict[str, int] = Field(default_factory=dict)  # new SQLs per owner this run
    unassigned: int = 0  # no team's territory matched: handed off without an owner
    waiting: int = 0  # the team was at capacity without a fallback: not handed off yet
    sla_met: int = 0
    reassigned: dict[str, int] = Field(default_factory=dict)  # per new owner
    escalated: dict[str, int] = Field(default_factory=dict)  # per team
    notified: dict[str, int] = Field(default_factory=dict)  # per kind: assigned, escalated
    notify_retried: int = 0
    notify_dead: int = 0
    notify_skipped: int = 0
    notify_backlog: int = 0  # notifications not sent yet after this run
    notify_stopped: str | None = None  # why this run left due notifications for the next one
    dead_letters: dict[str, int] = Field(default_factory=dict)  # dead handoffs now, per destination
    disabled: dict[str, str] = Field(default_factory=dict)  # destinations off after a 410 Gone, with why
    started: dict[str, str] = Field(default_factory=dict)  # new destinations that leave out earlier SQLs, with how many
    problems: list[Problem] = Field(default_factory=list)


class PipelineReport(BaseModel):
    ingest: IngestReport
    requalify: RequalifyReport
    nurture: NurtureReport
    handoff: HandoffRunReport
    problems: list[Problem] = Field(default_factory=list)  # every step's, in order


def _problem_lines(problems: list[Problem]) -> list[str]:
    if not problems:
        return []
    return ["", '## Problems this run (the run ends "Completed with problems" or Failed)', ""] + [
        f"- {p}" for p in problems
    ]


def _counts(title: str, counts: dict[str, int]) -> str:
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
        _counts(f"{name}", c.quarantine_by_reason) for name, c in report.sources.items() if c.quarantine_by_reason
    ]
    failed = [f"- {name}: {error}" for name, error in report.failed.items()]
    create_markdown_artifact(
        key="leadflow-ingest-quarantine",
        markdown="# Quarantine this run\n\n"
        + _counts("rejected records by reason", report.quarantine_by_reason)
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
                _counts("enrolled", report.enrolled),
                _counts("exited", report.exited),
                f"- queued: {report.queued}",
                f"- sent: {report.sent}",
                f"- unconfirmed (a sender died while handing them over; never sent again): {report.unconfirmed}",
                _counts("skipped at send time", report.skipped),
                _counts("deferred", report.deferred),
                _counts("failed", report.failed),
                *_held_lines(report.held),
                *_problem_lines(report.problems),
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
                _counts("would enroll", report.enrolled),
                _counts("would exit", report.exited),
                f"- would queue: {report.queued}",
                f"- would send: {report.would_send}",
                _counts("would skip", report.skipped),
                _counts("would defer", report.deferred),
                _counts("would fail", report.failed),
                _counts("would hold (template error; sent once it is fixed)", report.held),
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
        _counts("delivered by destination", {n: c.delivered for n, c in report.destinations.items() if c.delivered}),
        _counts("delivered by owner", report.delivered_by_owner),
        _counts("new SQLs assigned", report.assigned),
        f"- handed off without an owner (no territory matched): {report.unassigned}",
        f"- waiting for an owner with capacity: {report.waiting}",
        f"- SLAs met or closed: {report.sla_met}",
        _counts("reassigned after a missed SLA (to)", report.reassigned),
        _counts("escalated to a manager (team)", report.escalated),
        _counts("notifications sent", report.notified),
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
    return "\n".join(lines + _problem_lines(report.problems))


def publish_pipeline(report: PipelineReport, attention: dict[str, int], steps: list[dict[str, object]]) -> None:
    """`leadflow-pipeline`: the whole run at a glance on the pipeline's own run page."""
    ingest_rows = sum(c.inserted for c in report.ingest.sources.values())
    quarantined = sum(c.quarantined for c in report.ingest.sources.values())
    moves = [f"| {m.from_stage} | {m.to_stage} | {m.leads} |" for m in report.requalify.moves]
    slow = [f"| {s['step']} | {s['seconds']} |" for s in steps[:5]]
    failed = report.ingest.failed
    handoff = report.handoff
    delivered = ", ".join(
        f"{name} {c.delivered}" + (f" (stopped: {c.error})" if c.error else "")
        for name, c in handoff.destinations.items()
    )
    waiting = sum(c.backlog for c in handoff.destinations.values())
    lines = [
        "# leadflow pipeline run",
        "",
        "| step | result |",
        "|---|---|",
        f"| ingest | {ingest_rows} activities, {quarantined} quarantined"
        + (f", failed sources: {', '.join(failed)}" if failed else "")
        + " |",
        f"| requalify | {report.requalify.leads} leads scored ({report.requalify.mode}), "
        f"{report.requalify.changed} stage changes |",
        f"| nurture | {report.nurture.sent} emails sent, {report.nurture.queued} queued |",
        f"| handoff | {handoff.delivered} SQLs delivered ({delivered or 'no destination'}), {handoff.dead} dead"
        + (f", {waiting} not delivered yet" if waiting else "")
        + " |",
        "",
        "## Stage changes",
        "",
        "| from | to | leads |",
        "|---|---|---|",
        *(moves or ["| - | - | 0 |"]),
        "",
        "## Sends and failures by reason",
        "",
        _counts("skipped at send time", report.nurture.skipped),
        _counts("deferred", report.nurture.deferred),
        _counts("failed", report.nurture.failed),
        f"- handoffs retried: {report.handoff.retried}, dead: {report.handoff.dead}",
        "",
        "## Slowest steps",
        "",
        "| step | seconds |",
        "|---|---|",
        *(slow or ["| - | 0 |"]),
        "",
        "## Needs attention",
        "",
        f"- dead handoffs: {attention.get('handoffs_dead', 0)}, dead emails: {attention.get('emails_dead', 0)}, "
        f"failed emails: {attention.get('emails_failed', 0)}, quarantined records: {attention.get('quarantined', 0)}",
        f"- not delivered yet: {attention.get('handoffs_waiting', 0)} handoffs, "
        f"{attention.get('notifications_waiting', 0)} notifications",
        "- details: the `leadflow-attention` artifact and `leadflow ops dead-letters`",
        *_problem_lines(report.problems),
    ]
    dead = report.handoff.dead + attention.get("emails_dead", 0)
    headline = (
        f"{report.requalify.leads} leads scored, {report.requalify.changed} stage changes, "
        f"{report.nurture.sent} emails sent, {report.handoff.delivered} SQLs handed off, "
        f"{dead} dead letters, {quarantined} quarantined"
        + (f"; failed sources: {', '.join(failed)}" if failed else "")
        + (f"; {len(report.problems)} problem(s): {report.problems[0]}" if report.problems else "")
    )  # the run page shows an artifact's description, so the headline numbers go there too
    create_markdown_artifact(key="leadflow-pipeline", markdown="\n".join(lines), description=headline)
