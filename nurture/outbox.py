"""Sending the email outbox: claim rows, check compliance at send time, render, deliver, mark.

Each (enrollment, step) row produces at most one email, even across crashes:

1. `claim` takes due rows under a lease (status `sending`, `attempts + 1`); a row whose sender
   died before handing anything over comes back after the lease and is sent then (none lost).
2. Right before the message itself goes out (SMTP DATA, after the server accepted sender and
   recipient) the row is marked `in_flight` and committed, by a compare-and-set on the claim's
   attempt number, so a sender whose lease was taken over cannot send.
3. After the server's answer the row is `sent` (or failed, or back to pending with backoff).
4. A row still `in_flight` after its lease belongs to a sender that died mid-delivery: the server
   may hold the message, so `settle_in_flight` records it as `unconfirmed` and it is never sent again.

The Message-ID is fixed by the idempotency key, so even the file outbox (which needs no in-flight
mark: writing a message again replaces its file) never holds two copies.

A row whose template fails to render is held, never consumed: it goes back to pending without
counting an attempt, and its step is held for the rest of the run (nurture/held.py).

Here: claiming rows and sending them batch after batch. One row's send is nurture/delivery.py, the
marks it leaves nurture/marks.py, the loaded batch nurture/due.py, the message nurture/composer.py.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, update
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.connectors.mail import MailTransport
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import EmailOutbox, OutboxStatus
from leadflow.leads.db.sql import rowcount
from leadflow.leads.work.outbox import Clock, claim_due, fixed_clock
from leadflow.leads.work.progress import Progress, advance
from leadflow.nurture.composer import Composer
from leadflow.nurture.delivery import send_one
from leadflow.nurture.due import load_due
from leadflow.nurture.held import Step, TemplateGate, at_steps
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.marks import Marks
from leadflow.nurture.outcomes import Outcome, SendReport
from leadflow.nurture.render import TemplateRenderer

LEASE = timedelta(minutes=10)
STOPPED_IN_FLIGHT = "the sender stopped while handing the message to the mail server; it may have been delivered"


def claim(*, session: Session, now: datetime, limit: int, held: Collection[Step] = ()) -> list[int]:
    """Take up to `limit` due rows (pending, or sending with an expired lease) for this sender.

    Rows of `held` steps (sequence, step index) stay where they are: their templates fail.
    """
    return claim_due(
        session=session,
        table=EmailOutbox,
        now=now,
        limit=limit,
        lease=LEASE,
        where=[~at_steps(EmailOutbox.sequence, EmailOutbox.step, held)] if held else (),
        order_by=[col(EmailOutbox.next_attempt_at), col(EmailOutbox.id)],
    )


def settle_in_flight(*, session: Session, now: datetime) -> int:
    """Record rows left in flight past their lease as unconfirmed (their sender died mid-delivery); the caller commits.

    The server may have accepted such a message, so it counts as sent and is never sent again.
    """
    result = session.execute(
        update(EmailOutbox)
        .where(col(EmailOutbox.status) == OutboxStatus.in_flight, col(EmailOutbox.next_attempt_at) <= now)
        .values(status=OutboxStatus.unconfirmed.value, last_error=STOPPED_IN_FLIGHT)
        .execution_options(synchronize_session=False, preserve_rowcount=True)
    )
    return rowcount(result)


def send_claimed(
    *,
    engine: Engine,
    ids: list[int],
    config: WorkspaceConfig,
    renderer: TemplateRenderer,
    transport: MailTransport,
    links: LinkSigner,
    now: datetime | None = None,
    clock: Clock | None = None,
    gate: TemplateGate | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Send the claimed rows through an open transport, one at a time, in the order claimed.

    Times come from `clock` (a run passes the wall clock): the send window is judged when the row
    is sent and `sent_at` is when the server accepted the message. Without one, `now` stands still.
    With `gate`, rows of held steps go back to pending unsent, and a template that fails holds its step.
    Each row advances `progress`.
    """
    clock = clock or fixed_clock(now)
    report = SendReport()
    composer = Composer(config, renderer, links, gate)
    # A plain connection, not an ORM session: a fifth of the cost per statement, and the send loop
    # runs two of them per email.
    with engine.connect() as connection:
        claimed = and_(col(EmailOutbox.id).in_(ids), col(EmailOutbox.status) == OutboxStatus.sending)
        batch, history = load_due(connection, claimed, config.compliance, clock())
        connection.commit()
        marks = Marks(connection)
        try:
            for due in batch:
                outcome, reason, at = send_one(marks, composer, transport, due, history.get(due.lead_id, ()), clock)
                if outcome in (Outcome.sent, Outcome.unconfirmed):
                    history[due.lead_id].append(at)  # counts for the cap within this batch
                report.count(outcome, reason)
                advance(progress)
        finally:
            marks.flush()  # what waited for the next commit: the last confirmations, skips, deferrals
    return report


def send_claimed_over(
    *,
    engine: Engine,
    ids: list[int],
    transports: list[MailTransport],
    **kwargs: Any,
) -> SendReport:
    """`send_claimed` over several open connections at once: the rows split in slices, one thread each.

    The server's answers, not our CPU, bound one connection; a few side by side keep both busy.
    Each slice has its own session, so the rows' marks stay per connection and per row.
    """
    if len(transports) <= 1 or len(ids) < 2 * len(transports):
        return send_claimed(engine=engine, ids=ids, transport=transports[0], **kwargs)
    size = -(-len(ids) // len(transports))
    slices = [ids[i : i + size] for i in range(0, len(ids), size)]
    total = SendReport()
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="leadflow-send") as pool:
        futures = [
            pool.submit(send_claimed, engine=engine, ids=part, transport=transport, **kwargs)
            for part, transport in zip(slices, transports, strict=False)
        ]
        for future in futures:
            total.add(future.result())
    return total


def send_due(
    *,
    engine: Engine,
    transports: list[MailTransport],
    clock: Clock,
    batch_size: int,
    gate: TemplateGate | None = None,
    **kwargs: Any,
) -> SendReport:
    """Claim what is due by `clock` at each claim and send it, batch after batch, until nothing is due.

    Reading the clock at each claim (not once per run) lets runs side by side share the outbox: rows
    another run queued a moment ago are due for this one too. Rows of steps `gate` holds are left
    where they are. `kwargs` go to `send_claimed`.
    """
    total = SendReport()
    while True:
        held = gate.held_steps() if gate is not None else frozenset()
        with Session(engine) as session:
            ids = claim(session=session, now=clock(), limit=batch_size, held=held)  # commits the claim
        if not ids:
            return total
        total.add(send_claimed_over(engine=engine, ids=ids, transports=transports, clock=clock, gate=gate, **kwargs))
