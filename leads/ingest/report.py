"""The ingest run's report: what each source stored, what it quarantined, and which sources stopped."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from leadflow.leads.work.problems import Problem


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


def ingest_report(sources: dict[str, SourceCounts]) -> IngestReport:
    """The run's report from each source's counts: rejections summed by reason, a problem per stopped source."""
    reasons: Counter[str] = Counter()
    for counts in sources.values():
        reasons.update(counts.quarantine_by_reason)
    report = IngestReport(sources=sources, quarantine_by_reason=dict(reasons))
    report.problems = [
        Problem(step="ingest", what=f"source {name} stopped: {why}") for name, why in report.failed.items()
    ]
    return report
