"""The pipeline's report: the four subflows' reports and every problem, and its `leadflow-pipeline` artifact."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from leadflow.flows.reports import counts_line, problem_lines
from leadflow.handoff.report import HandoffRunReport
from leadflow.leads.ingest.report import IngestReport
from leadflow.leads.requalify.report import RequalifyReport
from leadflow.leads.work.problems import Problem
from leadflow.nurture.report import NurtureReport


class PipelineReport(BaseModel):
    ingest: IngestReport
    requalify: RequalifyReport
    nurture: NurtureReport
    handoff: HandoffRunReport
    problems: list[Problem] = Field(default_factory=list)  # every step's, in order


def pipeline_report(
    *, ingest: IngestReport, requalify: RequalifyReport, nurture: NurtureReport, handoff: HandoffRunReport
) -> PipelineReport:
    """The subflows' reports side by side, with their problems in the order the steps ran."""
    problems = [*ingest.problems, *nurture.problems, *handoff.problems]
    return PipelineReport(ingest=ingest, requalify=requalify, nurture=nurture, handoff=handoff, problems=problems)


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
        counts_line("skipped at send time", report.nurture.skipped),
        counts_line("deferred", report.nurture.deferred),
        counts_line("failed", report.nurture.failed),
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
        *problem_lines(report.problems),
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
