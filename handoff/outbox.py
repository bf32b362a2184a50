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

from sqlalchemy import Engine, and_, exists, func, or_, select, true, update
from sqlmodel import Session, col

from leadflow.connectors.backoff import OUTBOX_BACKOFF
from leadflow.connectors.errors import DestinationGoneError, FatalHandoffError, RetriableHandoffError
from leadflow.connectors.handoff import HandoffSink
from leadflow.connectors.handoff_payload import HandoffPayload
from leadflow.handoff.assignment import assigned_transitions, owner_payload
from leadflow.handoff.retry import past_horizon
from leadflow.handoff.starts import Start
from leadflow.leads.config.assignment import DeadLetterConfig
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import PROFILE_FIELDS, HandoffOutbox, Lead, OutboxStatus, Stage, StageTransition
from leadflow.leads.db.sql import upsert_insert
from leadflow.leads.requalify.explain import as_payload, explain_lead
from leadflow.leads.work.outbox import Clock, claim_due, fixed_clock
from leadflow.leads.work.progress import Progress, advance

LEASE = timedelta(minutes=10)
BATCH = 500  # rows claimed at a time; a run takes batch after batch until none is due


@dataclass
class HandoffReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    gone: str | None = None  # the 410 Gone message, if the destination retired itself this run
    by_owner: Counter[str] = field(default_factory=Counter)  # delivered, by owner id ("-" for none)
    last_error: str | None = None  # the newest failure's message, for `stopped`
    stopped: str | None = None  # why due rows were left for the next run (a per-run limit, a failing peer)


def handoff_key(transition_id: int, destination: str) -> str:
    return f"handoff:{transition_id}:{destination}"


def build_payload(session: Session, config: WorkspaceConfig, lead: Lead, transition: StageTransition) -> HandoffPayload:
    """What sales receives: who the lead is, why it qualified (as of then), and how it got here."""
    explanation = explain_lead(session=session, config=config, email=lead.email, now=transition.at)
    history = session.execute(
        select(StageTransition)
        .where(col(StageTransition.lead_id) == lead.id)
        .order_by(col(StageTransition.at), col(StageTransition.id))
    ).scalars()
    document = {
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
    return HandoffPayload.of(document)


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
            ~exists().where(
                col(HandoffOutbox.transition_id) == col(StageTransition.id), col(HandoffOutbox.destination) == name
            ),
            starts.get(name, Start()).condition(),
        )
        for name in destinations
    ]
    pending = session.execute(
        select(StageTransition, Lead, *(w.label(f"wanted_{n}") for n, w in enumerate(wanted)))
        .join(Lead, col(Lead.id) == col(StageTransition.lead_id))
        .where(
            col(StageTransition.to_stage) == Stage.sql.value,
            or_(*wanted),
            assigned_transitions() if config.handoff.teams else true(),  # waiting leads are not handed off yet
        )
        .order_by(col(StageTransition.id))
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
    key: str, lead_id: int, transition_id: int | None, destination: str, payload: HandoffPayload, now: datetime
) -> dict[str, Any]:
    """A handoff outbox row waiting for its first delivery attempt."""
    return {
        "idempotency_key": key,
        "lead_id": lead_id,
        "transition_id": transition_id,
        "destination": destination,
        "payload": payload.document,
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
    now: datetime | None = None,
    clock: Clock | None = None,
    batch_size: int = BATCH,
    limit: int | None = None,
    dead_letter: DeadLetterConfig = DeadLetterConfig(),
    progress: Progress | None = None,
) -> HandoffReport:
    """Deliver this destination's due rows, batch after batch, until none is due; each outcome commits alone.

    Rows are claimed by `clock` at each claim (a fixed `now` without one). The run stops early, leaving
    the rest queued and saying why in `report.stopped`, when `limit` rows were tried or when a whole
    batch failed without one delivery (the peer is down: hammering it with the backlog helps nobody).
    A 410 Gone stops too: that row and the rest go back to pending, untouched, and `report.gone`
    tells the caller to switch the destination off.
    """
    clock = clock or fixed_clock(now)
    report, tried = HandoffReport(), 0
    while not report.gone:
        take = batch_size if limit is None else min(batch_size, limit - tried)
        if take <= 0:
            report.stopped = f"the limit of {limit} deliveries per run was reached"
            break
        with Session(engine) as session:
            ids = claim_due(
                session=session,
                table=HandoffOutbox,
                now=clock(),
                limit=take,
                lease=LEASE,
                where=[col(HandoffOutbox.destination) == destination],
            )
        if not ids:
            break
        tried += len(ids)
        delivered, failed = report.delivered, report.retried + report.dead
        _deliver_batch(engine, sink, ids, clock, dead_letter, report, progress)
        if report.delivered == delivered and report.retried + report.dead > failed and not report.gone:
            last = report.last_error or "no answer"
            report.stopped = f"a whole batch of {len(ids)} failed ({last[:200]}); the rest waits for the next run"
            break
    return report


def _deliver_batch(
    engine: Engine,
    sink: HandoffSink,
    ids: list[int],
    clock: Clock,
    dead_letter: DeadLetterConfig,
    report: HandoffReport,
    progress: Progress | None,
) -> None:
    for index, row_id in enumerate(ids):
        with Session(engine) as session:
            row = session.get(HandoffOutbox, row_id)
            if row is None or row.status != OutboxStatus.sending:
                continue
            try:
                payload = HandoffPayload.of(row.payload)
                row.provider_id = sink.deliver(idempotency_key=row.idempotency_key, payload=payload)
                row.status, row.delivered_at, row.last_error = OutboxStatus.sent, clock(), None
                report.delivered += 1
                report.by_owner[(payload.owner.id if payload.owner else None) or "-"] += 1
            except RetriableHandoffError as exc:
                report.last_error = str(exc)
                _retry_or_die(row, str(exc), exc.retry_after, report, clock(), dead_letter)
            except DestinationGoneError as exc:
                report.gone = str(exc)[:500]
                _release(session, ids[index:], clock())
                session.commit()
                return
            except FatalHandoffError as exc:
                row.status, row.last_error = OutboxStatus.dead, str(exc)[:2000]
                report.last_error = str(exc)
                report.dead += 1
                report.errors[type(exc).__name__] += 1
            session.add(row)
            session.commit()
        advance(progress)


def undelivered(session: Session, destination: str) -> int:
    """Rows of this destination not delivered yet (queued, waiting for a retry, or being sent)."""
    count: int = session.execute(
        select(func.count())
        .select_from(HandoffOutbox)
        .where(
            col(HandoffOutbox.destination) == destination,
            col(HandoffOutbox.status).in_([OutboxStatus.pending.value, OutboxStatus.sending.value]),
        )
    ).scalar_one()
    return count


def _release(session: Session, ids: list[int], now: datetime) -> None:
    """Hand claimed rows back untouched (the attempt did not count): the destination is off."""
    session.execute(
        update(HandoffOutbox)
        .where(col(HandoffOutbox.id).in_(ids), col(HandoffOutbox.status) == OutboxStatus.sending)
        .values(status=OutboxStatus.pending.value, next_attempt_at=now, attempts=col(HandoffOutbox.attempts) - 1)
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
    next_try = now + timedelta(seconds=OUTBOX_BACKOFF.wait(row.attempts, retry_after))
    queued_at = row.requeued_at or row.created_at
    if past_horizon(attempts=row.attempts, queued_at=queued_at, now=now, horizon=dead_letter, next_try=next_try):
        row.status = OutboxStatus.dead
        report.dead += 1
        return
    row.status, row.next_attempt_at = OutboxStatus.pending, next_try
    report.retried += 1
