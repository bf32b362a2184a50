"""The handoff run's report: deliveries per destination and owner, SLAs, notifications, what needs a human.

The flow starts it from what was queued, adds each destination's delivery (or why it stopped) and the
notifications, then `settle_handoff_report` reads what is left in the outbox and names the problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field
from sqlalchemy import Engine

from leadflow.handoff.deadletters import dead_counts
from leadflow.handoff.destinations import disabled_reason
from leadflow.handoff.notify import NotifyReport, unsent_notifications
from leadflow.handoff.outbox import HandoffReport, undelivered
from leadflow.handoff.run import Queued
from leadflow.handoff.sla import SlaReport
from leadflow.leads.db.engine import session_scope
from leadflow.leads.work.problems import Problem


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

    def add_delivery(self, name: str, delivered: HandoffReport) -> None:
        """What one destination's delivery did this run."""
        counts = self.destinations[name]
        counts.delivered, counts.retried, counts.dead = delivered.delivered, delivered.retried, delivered.dead
        counts.stopped = delivered.stopped
        for owner, n in delivered.by_owner.items():
            self.delivered_by_owner[owner] = self.delivered_by_owner.get(owner, 0) + n
        self.delivered += counts.delivered
        self.retried += counts.retried
        self.dead += counts.dead

    def add_failure(self, name: str, error: str) -> None:
        """A destination that failed as a whole (refused credentials, a missing secret): its rows stay queued."""
        self.destinations[name].error = error

    def add_notifications(self, notified: NotifyReport) -> None:
        self.notified = dict(notified.sent)
        self.notify_retried, self.notify_dead = notified.retried, notified.dead
        self.notify_skipped, self.notify_stopped = notified.skipped, notified.stopped

    @property
    def failed(self) -> dict[str, str]:
        """Destinations that stopped as a whole, with why."""
        return {name: c.error for name, c in self.destinations.items() if c.error}


def handoff_report(destinations: Sequence[tuple[str, str]], queued: Queued, sla: SlaReport) -> HandoffRunReport:
    """A run's report before delivering: `destinations` as (name, kind), what was queued for each
    with the owners assigned, and the SLAs settled."""
    counts = {name: DestinationCounts(kind=kind, queued=queued.queued[name]) for name, kind in destinations}
    return HandoffRunReport(
        destination=", ".join(name for name, _ in destinations),
        destinations=counts,
        queued=sum(c.queued for c in counts.values()),
        assigned=dict(queued.assigned.assigned),
        unassigned=queued.assigned.unassigned,
        waiting=queued.assigned.waiting,
        sla_met=sla.met,
        reassigned=dict(sla.reassigned),
        escalated=dict(sla.escalated),
        started=queued.started,
    )


def settle_handoff_report(engine: Engine, report: HandoffRunReport, addresses: Mapping[str, str]) -> None:
    """What is left after delivering: backlogs, dead letters, switched-off destinations (`addresses`: where
    each one delivers), unsent notifications; then the problems an admin must look at."""
    with session_scope(engine) as session:
        report.dead_letters = dead_counts(session)
        for name, counts in report.destinations.items():
            counts.backlog = undelivered(session, name)
            reason = disabled_reason(session, name, addresses[name])
            if reason:
                report.disabled[name] = reason
        report.notify_backlog = unsent_notifications(session)
    report.problems = handoff_problems(report)


def handoff_problems(report: HandoffRunReport) -> list[Problem]:
    """What an admin must look at after this run: stopped or switched-off destinations, dead letters,
    and a backlog the run left behind on purpose (its limit, a peer failing a whole batch)."""
    problems = []
    for name, c in report.destinations.items():
        left = f"; {c.backlog} not delivered yet" if c.backlog else ""
        if c.error:
            problems.append(Problem(step="handoff", what=f"{name} stopped: {c.error}{left}"))
        elif name in report.disabled:
            problems.append(Problem(step="handoff", what=f"{name} is switched off ({report.disabled[name]}){left}"))
        elif c.stopped and c.backlog:
            problems.append(Problem(step="handoff", what=f"{name}: {c.backlog} not delivered yet: {c.stopped}"))
        if c.dead:
            problems.append(Problem(step="handoff", what=f"{name}: {c.dead} dead-lettered this run"))
    if report.notify_dead:
        problems.append(Problem(step="notifications", what=f"{report.notify_dead} dead-lettered this run"))
    if report.notify_stopped and report.notify_backlog:
        what = f"{report.notify_backlog} not sent yet: {report.notify_stopped}"
        problems.append(Problem(step="notifications", what=what))
    return problems
