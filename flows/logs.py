"""Each flow's counts as INFO log lines, so a run's log (worker, UI, `--verbose`) says what it did."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import get_run_logger

from leadflow.handoff.report import HandoffRunReport
from leadflow.leads.ingest.report import IngestReport
from leadflow.leads.requalify.report import RequalifyReport
from leadflow.nurture.report import NurtureReport

Report = IngestReport | RequalifyReport | NurtureReport | HandoffRunReport


def count_lines(report: Report) -> list[str]:
    """The lines for one flow's report (plain text, no secrets: reports hold counts and names only)."""
    if isinstance(report, IngestReport):
        return _ingest(report)
    if isinstance(report, RequalifyReport):
        return _requalify(report)
    if isinstance(report, NurtureReport):
        return _nurture(report)
    return _handoff(report)


def log_counts(report: Report) -> None:
    logger = get_run_logger()
    for line in count_lines(report):
        logger.info(line)
    for problem in getattr(report, "problems", None) or []:
        logger.warning("problem: %s", problem)


def _by(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n)


def _ingest(report: IngestReport) -> list[str]:
    lines = []
    for name, c in report.sources.items():
        line = (
            f"source {name}: {c.inserted} new events, {c.duplicates} duplicates, {c.new_leads} new leads, "
            f"{c.quarantined} quarantined" + (f" ({_by(c.quarantine_by_reason)})" if c.quarantine_by_reason else "")
        )
        lines.append(line + (f"; stopped: {c.error}" if c.error else ""))
    inserted = sum(c.inserted for c in report.sources.values())
    quarantined = sum(report.quarantine_by_reason.values())
    lines.append(
        f"ingested {inserted} new events from {len(report.sources)} source(s), {quarantined} records quarantined"
        + (f", {len(report.failed)} source(s) failed" if report.failed else "")
    )
    return lines


def _requalify(report: RequalifyReport) -> list[str]:
    moves = ", ".join(f"{m.from_stage} -> {m.to_stage} {m.leads}" for m in report.moves) or "none"
    changed = sum(m.leads for m in report.moves)
    return [
        f"requalified {report.leads} leads ({report.rescored} rescored, {report.mode}, {report.shards} shard(s), "
        f"rule set {report.ruleset_version}): {changed} stage changes: {moves}"
    ]


def _nurture(report: NurtureReport) -> list[str]:
    if report.dry_run:
        return [f"dry run: {report.would_send} emails would be sent; nothing was sent or stored"]
    line = (
        f"nurture: {sum(report.enrolled.values())} enrolled, {sum(report.exited.values())} left a sequence, "
        f"{report.queued} queued, {report.sent} sent, {sum(report.failed.values())} failed"
    )
    for label, counts in (("failed", report.failed), ("held back", report.skipped), ("waiting", report.deferred)):
        if counts:
            line += f"; {label}: {_by(counts)}"
    return [line + (f"; {report.unconfirmed} unconfirmed" if report.unconfirmed else "")]


def _handoff(report: HandoffRunReport) -> list[str]:
    lines = [
        f"destination {name}: {c.queued} queued, {c.delivered} handed off, {c.retried} to retry, {c.dead} dead-lettered"
        + (f"; stopped: {c.error}" if c.error else "")
        for name, c in report.destinations.items()
    ]
    lines.append(
        f"handoff: {report.delivered} handed off, {report.queued} queued, {report.retried} to retry, "
        f"{report.dead} dead-lettered; new SQLs by owner: {_by(report.assigned) or 'none'}"
        + (f"; {report.waiting} waiting for capacity" if report.waiting else "")
    )
    return lines
