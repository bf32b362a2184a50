"""Telling owners about their new SQLs (and managers about escalations), through an outbox.

Rows are queued with the assignment that causes them (handoff/assignment.py, handoff/sla.py),
one per (assignment, kind), so nobody is told twice about the same lead. The message is written
at send time from the lead, the transition that made it an SQL and the config, so it carries the
CRM link once the CRM id is known. Notification URLs come from the config at send time too, with
`${NAME}` references filled from the environment: tokens stay out of the config and the database.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from leadflow.connectors.backoff import OUTBOX_BACKOFF
from leadflow.connectors.errors import FatalNotifyError, RetriableNotifyError
from leadflow.connectors.notify import Notifier
from leadflow.handoff.retry import past_horizon
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Lead, LeadAssignment, NotificationOutbox, OutboxStatus, StageTransition
from leadflow.leads.work.outbox import Clock, claim_due, fixed_clock

LEASE = timedelta(minutes=10)
BATCH = 500  # notifications claimed at a time; a run takes batch after batch until none is due
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class NotifyReport:
    sent: Counter[str] = field(default_factory=Counter)  # by kind: assigned, escalated
    retried: int = 0
    dead: int = 0
    skipped: int = 0  # nobody to tell: no notify URL for that owner or team
    errors: list[str] = field(default_factory=list)
    last_error: str | None = None  # the newest failure's message, for `stopped`
    stopped: str | None = None  # why due notifications were left for the next run

    @property
    def failures(self) -> int:
        return self.retried + self.dead


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def recipient_url(config: WorkspaceConfig, row: NotificationOutbox, team: str | None) -> str | None:
    """The apprise URL for owner:ID (the owner's, else their team's) or manager:TEAM."""
    handoff = config.handoff
    kind, _, name = row.recipient.partition(":")
    if kind == "manager":
        found = handoff.team(name)
        return found.manager if found else None
    owner = handoff.owner(name)
    if owner is not None and owner.notify:
        return owner.notify
    found = handoff.team(team) if team else None
    return found.notify if found else None


def expand(url: str, env: Mapping[str, str]) -> str:
    """Fill ${NAME} from the environment; a missing variable is a config mistake, named."""
    missing = [name for name in _ENV_REF.findall(url) if not env.get(name)]
    if missing:
        raise FatalNotifyError(f"the notification URL needs ${{{missing[0]}}}, which is not set")
    return _ENV_REF.sub(lambda m: env[m.group(1)], url)


def lead_link(config: WorkspaceConfig, lead: Lead) -> str:
    """The lead's CRM record when its id and a link pattern are known, else the explain command."""
    links = config.handoff.notify.crm_links
    kinds = {source.name: source.kind for source in config.sources}
    for key, crm_id in sorted((lead.crm_ids or {}).items()):
        vendor = kinds.get(key, key)
        if vendor in links and crm_id:
            return links[vendor].replace("{id}", str(crm_id))
    return f"leadflow explain {lead.email}"


def render(
    config: WorkspaceConfig, row: NotificationOutbox, assignment: LeadAssignment, lead: Lead, t: StageTransition
) -> Message:
    """What the owner (or manager) reads: who, why they qualified, the score, and where to look."""
    who = " ".join(part for part in (lead.first_name, lead.last_name) if part) or lead.email
    at = f" ({lead.company})" if lead.company else ""
    owner = config.handoff.owner(assignment.owner_id) if assignment.owner_id else None
    owner_name = owner.name if owner else (assignment.owner_id or "nobody")
    lines = [
        f"{who} <{lead.email}>" + (f", {lead.title}" if lead.title else "") + at,
        f"Owner: {owner_name}",
        f"Why: {t.reason}",
        f"Score: {t.score:g} (fit {t.fit_score:g}, engagement {t.engagement_score:g}), "
        f"SQL since {t.at:%Y-%m-%d %H:%M} UTC",
        f"Open: {lead_link(config, lead)}",
    ]
    if assignment.seq > 0 and row.kind == "assigned":
        lines.insert(2, f"Reassigned to you: {assignment.reason}")
    if row.kind == "escalated":
        sla = config.handoff.sla
        hours = f"{sla.hours:g} h" if sla else "the SLA"
        title = f"Escalation: {who}{at} was not followed up within {hours}"
        lines.insert(1, f"Assigned {assignment.assigned_at:%Y-%m-%d %H:%M} UTC ({assignment.reason})")
    else:
        title = f"New SQL for you: {who}{at}"
    return Message(title=title, body="\n".join(lines))


def send_notifications(
    *,
    engine: Engine,
    config: WorkspaceConfig,
    notifier: Notifier,
    env: Mapping[str, str],
    now: datetime | None = None,
    clock: Clock | None = None,
    batch_size: int = BATCH,
    limit: int | None = None,
) -> NotifyReport:
    """Send due notifications, batch after batch, until none is due; each outcome commits alone.

    Claimed by `clock` at each claim (a fixed `now` without one). Stops early, leaving the rest queued
    and saying why in `report.stopped`, after `limit` notifications or a whole batch without one sent.
    """
    clock = clock or fixed_clock(now)
    report, tried = NotifyReport(), 0
    while True:
        take = batch_size if limit is None else min(batch_size, limit - tried)
        if take <= 0:
            report.stopped = f"the limit of {limit} notifications per run was reached"
            return report
        with Session(engine) as session:
            ids = claim_due(session=session, table=NotificationOutbox, now=clock(), limit=take, lease=LEASE)
        if not ids:
            return report
        tried += len(ids)
        sent, failures = sum(report.sent.values()), report.failures
        for row_id in ids:
            with Session(engine) as session:
                _send_one(session, row_id, config, notifier, env, clock, report)
                session.commit()
        if sum(report.sent.values()) == sent and report.failures > failures:
            last = report.last_error or "no answer"
            report.stopped = f"a whole batch of {len(ids)} failed ({last[:200]}); the rest waits for the next run"
            return report


def unsent_notifications(session: Session) -> int:
    """Notifications not sent yet (queued, waiting for a retry, or being sent)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(NotificationOutbox)
            .where(col(NotificationOutbox.status).in_([OutboxStatus.pending.value, OutboxStatus.sending.value]))
        ).scalar_one()
    )


def _send_one(
    session: Session,
    row_id: int,
    config: WorkspaceConfig,
    notifier: Notifier,
    env: Mapping[str, str],
    clock: Clock,
    report: NotifyReport,
) -> None:
    row = session.get(NotificationOutbox, row_id)
    if row is None or row.status != OutboxStatus.sending:
        return
    assignment = session.get(LeadAssignment, row.assignment_id)
    lead = session.get(Lead, row.lead_id)
    transition = session.get(StageTransition, assignment.transition_id) if assignment else None
    if assignment is None or lead is None or transition is None:
        row.status, row.last_error = OutboxStatus.skipped, "the assignment or lead no longer exists"
        report.skipped += 1
        return
    url = recipient_url(config, row, assignment.team)
    if not url:
        row.status, row.last_error = OutboxStatus.skipped, f"no notify URL configured for {row.recipient}"
        report.skipped += 1
        return
    message = render(config, row, assignment, lead, transition)
    try:
        notifier.send(url=expand(url, env), title=message.title, body=message.body)
        row.status, row.sent_at, row.last_error = OutboxStatus.sent, clock(), None
        report.sent[row.kind] += 1
    except RetriableNotifyError as exc:
        now = clock()
        row.last_error = report.last_error = f"{row.recipient}: {exc}"[:2000]
        next_try = now + timedelta(seconds=OUTBOX_BACKOFF.wait(row.attempts))
        horizon = config.handoff.dead_letter_after
        queued_at = row.requeued_at or row.created_at
        if past_horizon(attempts=row.attempts, queued_at=queued_at, now=now, horizon=horizon, next_try=next_try):
            row.status = OutboxStatus.dead
            report.dead += 1
        else:
            row.status, row.next_attempt_at = OutboxStatus.pending, next_try
            report.retried += 1
    except FatalNotifyError as exc:
        row.status, row.last_error = OutboxStatus.dead, f"{row.recipient}: {exc}"[:2000]
        report.last_error = row.last_error
        report.dead += 1
        report.errors.append(row.last_error)
    session.add(row)
