"""The handoff outbox: one row per (SQL transition, destination), delivered at least once with a
stable idempotency key, so the peer sees each SQL exactly once.

The payload is frozen when the row is written (the lead as it was when it qualified, with the
reasons), so a retry a day later sends what sales would have seen then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, exists, or_, select, true, update
from sqlmodel import Session

from connectors.handoff import DestinationGoneError, FatalHandoffError, HandoffSink, RetriableHandoffError
from handoff.assignment import assigned_transitions, owner_payload
from handoff.retry import backoff, past_horizon
from handoff.starts import Start
from leads.assignment_config import DeadLetterConfig
from leads.config import WorkspaceConfig
from leads.explain import as_payload, explain_lead
from leads.models import HandoffOutbox, Lead, OutboxStatus, Stage, StageTransition, utcnow
from leads.outbox import claim_due
from leads.progress import Progress, advance
from leads.records import PROFILE_FIELDS
from leads.sql import upsert_insert

LEASE = timedelta(minutes=10)


@dataclass
class HandoffReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    gone: str | None = None  # the 410 Gone message, if the destination retired itself this run
    by_owner: Counter[str] = field(default_factory=Counter)  # delivered, by owner id ("-" for none)


def handoff_key(transition_id: int, destination: str) -> str:
    return f"handoff:{transition_id}:{destination}"


def build_payload(session: Session, config: WorkspaceConfig, lead: Lead, transition: StageTransition) -> dict[str, Any]:
    """What sales receives: who the lead is, why it qualified (as of then), and how it got here."""
    explanation = explain_lead(session=session, config=config, email=lead.email, now=transition.at)
    history = session.execute(
        select(StageTransition)
        .where(StageTransition.lead_id == lead.id)
        .order_by(StageTransition.at, StageTransition.id)
    ).scalars()
    return {
        "event": "lead.sql",
        "lead": {"email": lead.email, **{name: getattr(lead, name) for name in PROFILE_FIELDS}, "owner": lead.owner},
        "owner": owner_payload(config.handoff, lead.owner),
        "qualified_at": transition.at.isoformat() + "Z",
        "reason": transition.reason,
        "ruleset_version": transition.ruleset_version,
        "score": {"fit": transition.fit_score, "engagement": transition.engagement_score, "total": transition.score},
        "explanation": as_payload(explanation),
        "stage_history": [
            {"from": t.from_stage, "to": t.to_stage, "at": t.at.isoformat() + "Z", "reason": t.reason} for t in history
        ],
    }


def queue_new_sqls(*, session: Session, config: WorkspaceConfig, destination: str, now: datetime) -> int:
    """Write a handoff row for every SQL transition not yet queued for this destination; caller commits."""
    return queue_new_sqls_for(session=session, config=config, destinations=[destination], now=now)[destination]


def queue_new_sqls_for(
    *,
    session: Session,
    config: WorkspaceConfig,
    destinations: Sequence[str],
    now: datetime,
    starts: Mapping[str, Start] | None = None,
) -> dict[str, int]:
    """Queue every SQL transition for each destination that lacks it, building each payload once; caller commits.

    `starts` says from which SQLs on each destination receives them (handoff/starts.py; none given: all).
    The payload (with its explanation, the costly part) is the same for every destination, so a
    transition missing from three destinations is explained once, not three times.
    """
    queued = dict.fromkeys(destinations, 0)
    if not destinations:
        return queued
    starts = starts or {}
    # Per destination: it lacks the transition and the transition is one it receives (handoff/starts.py).
    wanted = [
        and_(
            ~exists().where(HandoffOutbox.transition_id == StageTransition.id, HandoffOutbox.destination == name),
            starts.get(name, Start()).condition(),
        )
        for name in destinations
    ]
    pending = session.execute(
        select(StageTransition, Lead, *(w.label(f"wanted_{n}") for n, w in enumerate(wanted)))
        .join(Lead, Lead.id == StageTransition.lead_id)
        .where(
            StageTransition.to_stage == Stage.sql.value,
            or_(*wanted),
            assigned_transitions() if config.handoff.teams else true(),  # waiting leads are not handed off yet
        )
        .order_by(StageTransition.id)
    ).all()
    rows = []
    for t, lead, *flags in pending:
        payload = build_payload(session, config, lead, t)
        for name, flag in zip(destinations, flags, strict=True):
            if flag:
                queued[name] += 1
                rows.append(pending_row(handoff_key(t.id, name), lead.id, t.id, name, payload, now))
    queue_pending(session, rows)
    return queued


def pending_row(
    key: str, lead_id: int, transition_id: int, destination: str, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """A handoff outbox row waiting for its first delivery attempt."""
    return {
        "idempotency_key": key,
        "lead_id": lead_id,
        "transition_id": transition_id,
        "destination": destination,
        "payload": payload,
        "status": OutboxStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def queue_pending(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert `pending_row`s; a key already in the outbox is left as it is (queueing twice is a no-op)."""
    if rows:
        session.execute(
            upsert_insert(session, HandoffOutbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows
        )


def deliver_pending(
    *,
    engine: Engine,
    sink: HandoffSink,
    destination: str,
    now: datetime,
    limit: int = 1000,
    dead_letter: DeadLetterConfig = DeadLetterConfig(),
    progress: Progress | None = None,
) -> HandoffReport:
    """Claim due rows for this destination and deliver each, committing each outcome on its own
    (and advancing `progress`).

    A 410 Gone stops the batch: that row and the rest go back to pending, untouched, and
    `report.gone` tells the caller to switch the destination off.
    """
    report = HandoffReport()
    with Session(engine) as session:
        ids = claim_due(
            session=session,
            table=HandoffOutbox,
            now=now,
            limit=limit,
            lease=LEASE,
            where=[HandoffOutbox.destination == destination],
        )
    for index, row_id in enumerate(ids):
        with Session(engine) as session:
            row = session.get(HandoffOutbox, row_id)
            if row is None or row.status != OutboxStatus.sending:
                continue
            try:
                row.provider_id = sink.deliver(idempotency_key=row.idempotency_key, payload=row.payload)
                row.status, row.delivered_at, row.last_error = OutboxStatus.sent, utcnow(), None
                report.delivered += 1
                report.by_owner[(row.payload.get("owner") or {}).get("id") or "-"] += 1
            except RetriableHandoffError as exc:
                _retry_or_die(row, str(exc), exc.retry_after, report, now, dead_letter)
            except DestinationGoneError as exc:
                report.gone = str(exc)[:500]
                _release(session, ids[index:], now)
                session.commit()
                break
            except FatalHandoffError as exc:
                row.status, row.last_error = OutboxStatus.dead, str(exc)[:2000]
                report.dead += 1
                report.errors[type(exc).__name__] += 1
            session.add(row)
            session.commit()
        advance(progress)
    return report


def _release(session: Session, ids: list[int], now: datetime) -> None:
    """Hand claimed rows back untouched (the attempt did not count): the destination is off."""
    session.execute(
        update(HandoffOutbox)
        .where(HandoffOutbox.id.in_(ids), HandoffOutbox.status == OutboxStatus.sending)
        .values(status=OutboxStatus.pending.value, next_attempt_at=now, attempts=HandoffOutbox.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def _retry_or_die(
    row: HandoffOutbox,
    error: str,
    retry_after: float | None,
    report: HandoffReport,
    now: datetime,
    dead_letter: DeadLetterConfig,
) -> None:
    row.last_error = error[:2000]
    next_try = now + timedelta(seconds=backoff(row.attempts, retry_after))
    queued_at = row.requeued_at or row.created_at
    if past_horizon(attempts=row.attempts, queued_at=queued_at, now=now, horizon=dead_letter, next_try=next_try):
        row.status = OutboxStatus.dead
        report.dead += 1
        return
    row.status, row.next_attempt_at = OutboxStatus.pending, next_try
    report.retried += 1
