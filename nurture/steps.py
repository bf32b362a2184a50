"""Queuing due steps: waits (fixed or for an event), branches on engagement, one outbox row per step.

`enrollment.step` is the index of the next step in the sequence's list. Branches only skip
ahead, so an enrollment queues each index at most once and the outbox key
`nurture:<enrollment id>:<step index>` stays unique per (enrollment, step); a skipped step
simply has no row. A queued step leaves its enrollment waiting for delivery (`next_due_at` NULL):
the next step's delay, its `wait_for` window and engagement (`waiting_since`) all start when that
email was actually sent (nurture/pacing.py), never while it is unsent.
Queuing writes the outbox rows and advances the enrollments in the caller's transaction.
With a template gate (nurture/held.py), a lead at or headed for a step whose templates fail is
left where it is: no row, no advance, so it gets that step once the template is fixed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.nurture import END, ENGAGEMENT_ACTIVITY, Sequence
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Activity, EmailOutbox, EnrollmentStatus, NurtureEnrollment, OutboxStatus
from leadflow.leads.db.sql import rowcount, upsert_insert
from leadflow.nurture.held import TemplateGate, at_steps
from leadflow.nurture.pacing import pace_from_sends, wait_days

E = NurtureEnrollment
EMAIL_ENGAGEMENT = ("opened", "clicked")  # engagement with an email, which names its sequence


def outbox_key(enrollment_id: int, step: int) -> str:
    """The idempotency key of an enrollment's step (its index in the config's list of steps)."""
    return f"nurture:{enrollment_id}:{step}"


def first_due(sequence: Sequence, now: datetime) -> datetime:
    return now + timedelta(days=wait_days(sequence.steps[0]))


def engaged(event: str, page: str | None, now: datetime) -> ColumnElement[bool]:
    """The enrollment's lead did `event` (opened, clicked, visited, replied) since the previous email was sent.

    Opens and clicks count when they are of this sequence's emails: leadflow's tracked links and pixel
    record the sequence in the activity's properties. A lead in two sequences who clicks in one does not
    move the other on."""
    conditions = [
        col(Activity.lead_id) == col(E.lead_id),
        col(Activity.type) == ENGAGEMENT_ACTIVITY[event],
        col(Activity.occurred_at) > func.coalesce(E.waiting_since, E.enrolled_at),
        col(Activity.occurred_at) <= now,
    ]
    if event in EMAIL_ENGAGEMENT:
        conditions.append(col(Activity.properties)["sequence"].as_string() == col(E.sequence))
    if page is not None:
        conditions.append(col(Activity.target).contains(page, autoescape=True))
    return exists().where(*conditions)


def wake_waiting(*, session: Session, config: WorkspaceConfig, now: datetime) -> int:
    """Make steps that wait for an event due now where the event has happened; one UPDATE per such step."""
    woken = 0
    for sequence in config.nurture.sequences:
        for index, step in enumerate(sequence.steps):
            if step.wait_for is None:
                continue
            result = session.execute(
                update(E)
                .where(
                    col(E.status) == EnrollmentStatus.active,
                    col(E.sequence) == sequence.name,
                    col(E.step) == index,
                    col(E.next_due_at) > now,
                    engaged(step.wait_for.event, step.wait_for.page, now),
                )
                .values(next_due_at=now)
                .execution_options(synchronize_session=False)
            )
            woken += rowcount(result)
    return woken


def queue_due_steps(
    *,
    session: Session,
    config: WorkspaceConfig,
    now: datetime,
    limit: int = 5000,
    wake: bool = True,
    gate: TemplateGate | None = None,
) -> int:
    """Write an outbox row for each due step (after its branches) and advance its enrollment; the caller commits.

    First the enrollments whose previous email has been settled since are paced from its `sent_at`.
    `wake=False` skips pacing and waking steps that wait for an event: a caller that queues in batches
    at one `now` does both with the first batch only (which also checks the due steps' templates).
    With `gate`, enrollments at a held step are left out in SQL; those a branch sends to a held
    step are left where they are and remembered in `gate.jumped`, so later batches skip them.
    """
    sequences = {s.name: s for s in config.nurture.sequences}
    if wake:
        pace_from_sends(session=session, config=config, now=now)
        wake_waiting(session=session, config=config, now=now)
    query = select(col(E.id), col(E.lead_id), col(E.sequence), col(E.step)).where(
        col(E.status) == EnrollmentStatus.active, col(E.next_due_at) <= now
    )
    if gate is not None:
        gate.check_all()  # once per gate: a step found broken is left out in SQL from the first batch
        query = query.where(~at_steps(E.sequence, E.step, gate.held_steps()))
        if gate.jumped:
            query = query.where(col(E.id).not_in(sorted(gate.jumped)))
    due = session.execute(query.order_by(col(E.next_due_at), col(E.id)).limit(limit)).all()
    # Where each due enrollment goes: a step index to send, END, or None (sequence gone from config).
    target: dict[int, int | str | None] = {}
    for enrollment_id, _, name, step in due:
        sequence = sequences.get(name)
        target[enrollment_id] = None if sequence is None else (step if step < len(sequence.steps) else END)
    _follow_branches(session, sequences, {row.id: row.sequence for row in due}, target, now)

    rows, advances = [], []
    for enrollment_id, lead_id, name, current in due:
        where = target[enrollment_id]
        if gate is not None and _waits(gate, enrollment_id, name, current, where):
            continue
        if where is None:
            advances.append(_finish(enrollment_id, now, "sequence removed from config"))
            continue
        if where == END:
            advances.append(_finish(enrollment_id, now, None))
            continue
        assert isinstance(where, int)
        rows.append(
            {
                "idempotency_key": outbox_key(enrollment_id, where),
                "lead_id": lead_id,
                "enrollment_id": enrollment_id,
                "sequence": name,
                "step": where,
                "status": OutboxStatus.pending.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
        advances.append(_advance(enrollment_id, where, sequences[name], now))
    if rows:
        session.execute(
            upsert_insert(session, EmailOutbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows
        )
    # ORM bulk UPDATE by primary key: one executemany per shape of row (advanced, finished), not one per lead.
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for enrollment_id, values in advances:
        shapes[tuple(sorted(values))].append({"id": enrollment_id, **values})
    for batch in shapes.values():
        session.execute(update(E), batch)
    return len(rows)


def _waits(gate: TemplateGate, enrollment_id: int, name: str, current: int, where: int | str | None) -> bool:
    """Whether the enrollment stays where it is: its step, or the step a branch sends it to, is held."""
    if gate.problem(name, current) is not None:
        return True  # later batches leave it out in SQL
    if isinstance(where, int) and where != current and gate.problem(name, where) is not None:
        gate.jumped[enrollment_id] = (name, where)
        return True
    return False


def _follow_branches(
    session: Session,
    sequences: dict[str, Sequence],
    names: dict[int, str],
    target: dict[int, int | str | None],
    now: datetime,
) -> None:
    """Resolve branch jumps in rounds: one query per (sequence, step, branch) among the due enrollments.

    A jump lands on a later step, whose own branches are checked in the next round, so this ends.
    """
    pending = {i: t for i, t in target.items() if isinstance(t, int) and sequences[names[i]].steps[t].branches}
    while pending:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for enrollment_id, index in pending.items():
            groups[(names[enrollment_id], index)].append(enrollment_id)
        pending = {}
        for (name, index), ids in groups.items():
            sequence = sequences[name]
            undecided = set(ids)
            for branch in sequence.steps[index].branches:
                if not undecided:
                    break
                engaging = select(col(E.id)).where(
                    col(E.id).in_(sorted(undecided)), engaged(branch.if_, branch.page, now)
                )
                # Ids are never NULL (the model types them optional for rows not yet inserted).
                hit = cast("set[int]", set(session.scalars(engaging)))
                undecided -= hit
                jump = END if branch.goto == END else sequence.step_index(branch.goto)  # the config checks goto
                for enrollment_id in hit:
                    target[enrollment_id] = jump
                    if isinstance(jump, int) and sequence.steps[jump].branches:
                        pending[enrollment_id] = jump


def _advance(enrollment_id: int, step: int, sequence: Sequence, now: datetime) -> tuple[int, dict[str, Any]]:
    """Move on past the queued step; the next one waits for this email to be sent (nurture/pacing.py)."""
    following = step + 1
    if following >= len(sequence.steps):
        return _finish(enrollment_id, now, None)
    return enrollment_id, {"step": following, "next_due_at": None}


def _finish(enrollment_id: int, now: datetime, reason: str | None) -> tuple[int, dict[str, Any]]:
    status = EnrollmentStatus.completed if reason is None else EnrollmentStatus.exited
    return enrollment_id, {
        "status": status.value,
        "next_due_at": None,
        "exited_at": now,
        "exit_reason": reason or "completed",
    }
