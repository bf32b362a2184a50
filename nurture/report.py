"""The nurture run's report: enrollments, sends by outcome, held steps; for a dry run, what would happen."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

from leadflow.leads.work.problems import Problem
from leadflow.nurture.dry_run import Preview
from leadflow.nurture.held import HeldStep
from leadflow.nurture.outcomes import SendReport


@dataclass
class EnrollmentChanges:
    """What a run decided before sending: leads that joined or left a sequence, steps queued."""

    enrolled: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    queued: int = 0


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


def nurture_report(changes: EnrollmentChanges, sent: SendReport, held: list[HeldStep], outbox: str) -> NurtureReport:
    """A run's report; failed emails and held steps are its problems. `outbox`: the mail URL, without secrets."""
    report = NurtureReport(
        enrolled=dict(changes.enrolled),
        exited=dict(changes.exited),
        queued=changes.queued,
        sent=sent.sent,
        unconfirmed=sent.unconfirmed,
        skipped=dict(sent.skipped),
        deferred=dict(sent.deferred),
        failed=dict(sent.failed),
        held={h.describe(): h.emails for h in held},
        outbox=outbox,
    )
    report.problems = [
        Problem(step="nurture", what=f"{n} email(s) failed: {reason}") for reason, n in sorted(sent.failed.items())
    ] + [Problem(step="nurture", what=f"{n} email(s) held: {where}") for where, n in report.held.items()]
    return report


def dry_run_report(changes: EnrollmentChanges, preview: Preview, outbox: str) -> NurtureReport:
    """What a run would do now: the same decisions and judgements, nothing sent or stored."""
    return NurtureReport(
        enrolled=dict(changes.enrolled),
        exited=dict(changes.exited),
        queued=changes.queued,
        unconfirmed=preview.unconfirmed,
        skipped=dict(preview.skipped),
        deferred=dict(preview.deferred),
        failed=dict(preview.failed),
        held=dict(preview.held),
        outbox=outbox,
        dry_run=True,
        would_send=preview.would_send,
        preview=[PreviewEmail(**asdict(row)) for row in preview.rows],
        preview_more=preview.more,
    )
