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
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, select, update
from sqlalchemy.orm import Session

from leadflow.connectors.backoff import OUTBOX_BACKOFF
from leadflow.connectors.errors import PermanentMailError, TransientMailError, UnconfirmedMailError
from leadflow.connectors.mail import Envelope, MailTransport
from leadflow.leads.config.compliance import ComplianceConfig
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import (
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Suppression,
    SuppressionReason,
)
from leadflow.leads.ingest.records import PROFILE_FIELDS
from leadflow.leads.work.outbox import Clock, claim_due, fixed_clock
from leadflow.leads.work.progress import Progress, advance
from leadflow.nurture import compliance, tokens
from leadflow.nurture import links as tracked_links
from leadflow.nurture.held import Step, TemplateGate, at_steps
from leadflow.nurture.message import compose
from leadflow.nurture.render import RenderedEmail, TemplateRenderer
from leadflow.nurture.suppression import ALL, suppress

LEASE = timedelta(minutes=10)
# A held row is due again just after this run's clock: a later run takes it, this one never spins on it.
HOLD_PAUSE = timedelta(seconds=1)
MAX_ATTEMPTS = 6
# Statuses that count as "emailed" for the frequency cap.
DELIVERED = (OutboxStatus.sent.value, OutboxStatus.in_flight.value, OutboxStatus.unconfirmed.value)


class Outcome(StrEnum):
    """What became of one claimed row in a send."""

    sent = "sent"
    unconfirmed = "unconfirmed"
    skipped = "skipped"
    deferred = "deferred"
    failed = "failed"
    held = "held"  # its template failed: back to pending, no attempt counted


@dataclass
class SendReport:
    sent: int = 0
    unconfirmed: int = 0  # in flight when a sender died: may have been delivered, never sent again
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)  # by where the template error is

    def count(self, outcome: Outcome, reason: str = "") -> None:
        if outcome == Outcome.sent:
            self.sent += 1
        elif outcome == Outcome.unconfirmed:
            self.unconfirmed += 1
        else:
            getattr(self, outcome.value)[reason] += 1

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.unconfirmed += other.unconfirmed
        self.skipped.update(other.skipped)
        self.deferred.update(other.deferred)
        self.failed.update(other.failed)
        self.held.update(other.held)


@dataclass(frozen=True)
class LinkSigner:
    """Makes the public links an email carries: unsubscribe, tracked clicks and (optionally) an open pixel."""

    secret_key: str
    public_base_url: str
    track_opens: bool = False

    def unsubscribe_url(self, lead_id: int, sequence: str) -> str:
        token = tokens.sign(self.secret_key, "unsubscribe", lead_id, sequence)
        return f"{self.public_base_url.rstrip('/')}/u/{token}"

    def click_url(self, lead_id: int, sequence: str, step: int, url: str) -> str:
        token = tracked_links.click_token(self.secret_key, lead_id, sequence, step, url)
        return f"{self.public_base_url.rstrip('/')}/c/{token}"

    def open_url(self, lead_id: int, sequence: str, step: int) -> str:
        token = tracked_links.open_token(self.secret_key, lead_id, sequence, step)
        return f"{self.public_base_url.rstrip('/')}/o/{token}.gif"

    def track(self, html: str, *, lead_id: int, sequence: str, step: int, unsubscribe_url: str | None = None) -> str:
        """The HTML part with its web links made tracked clicks (never the unsubscribe link), and the pixel."""
        html = tracked_links.rewrite_links(
            html,
            lambda url: self.click_url(lead_id, sequence, step, url),
            keep={unsubscribe_url or self.unsubscribe_url(lead_id, sequence)},
        )
        return tracked_links.add_open_pixel(html, self.open_url(lead_id, sequence, step)) if self.track_opens else html


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
        order_by=[EmailOutbox.next_attempt_at, EmailOutbox.id],
    )


def settle_in_flight(*, session: Session, now: datetime) -> int:
    """Record rows left in flight past their lease as unconfirmed (their sender died mid-delivery); the caller commits.

    The server may have accepted such a message, so it counts as sent and is never sent again.
    """
    result = session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.status == OutboxStatus.in_flight, EmailOutbox.next_attempt_at <= now)
        .values(
            status=OutboxStatus.unconfirmed.value,
            last_error="the sender stopped while handing the message to the mail server; it may have been delivered",
        )
        .execution_options(synchronize_session=False, preserve_rowcount=True)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


def lead_context(lead: Lead | Any) -> dict[str, Any]:
    """What templates may use of a lead: its profile fields and email, nothing internal."""
    return {"email": lead.email, **{name: getattr(lead, name) for name in PROFILE_FIELDS}}


# --- one batch: facts, verdicts, messages ----------------------------------------------------------


@dataclass(slots=True)
class Due:
    """One outbox row about to be sent, with what the gate and the templates need of its lead."""

    row_id: int
    attempts: int
    key: str
    lead_id: int
    sequence: str
    step: int
    lead: dict[str, Any]
    recipient: compliance.Recipient


_LEAD_COLUMNS = [Lead.email, *(Lead.__table__.c[name] for name in PROFILE_FIELDS)]


def load_due(
    session: Session | Connection, where: Any, config: ComplianceConfig, now: datetime, limit: int | None = None
) -> tuple[list[Due], dict[int, list[datetime]]]:
    """The rows matching `where` with their leads' facts, and each lead's recent sends (for the cap)."""
    query = (
        select(
            EmailOutbox.id,
            EmailOutbox.attempts,
            EmailOutbox.idempotency_key,
            EmailOutbox.lead_id,
            EmailOutbox.sequence,
            EmailOutbox.step,
            Lead.unsubscribed_at,
            Lead.bounced_at,
            NurtureEnrollment.status.label("enrollment_status"),
            NurtureEnrollment.exit_reason,
            *_LEAD_COLUMNS,
        )
        .join(Lead, Lead.id == EmailOutbox.lead_id)
        .outerjoin(NurtureEnrollment, NurtureEnrollment.id == EmailOutbox.enrollment_id)
        .where(where)
        .order_by(EmailOutbox.id)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    emails = list({r.email for r in rows})
    opted_out: dict[str, dict[str, str]] = defaultdict(dict)
    for chunk in _chunks(emails, 5000):
        for email, scope, reason in session.execute(
            select(Suppression.email, Suppression.scope, Suppression.reason).where(Suppression.email.in_(chunk))
        ):
            opted_out[email][scope] = reason
    history: dict[int, list[datetime]] = defaultdict(list)
    cap = config.frequency_cap
    if cap is not None and rows:
        lead_ids = list({r.lead_id for r in rows})
        for chunk in _chunks(lead_ids, 5000):
            for lead_id, sent_at in session.execute(
                select(EmailOutbox.lead_id, EmailOutbox.sent_at).where(
                    EmailOutbox.lead_id.in_(chunk),
                    EmailOutbox.status.in_(DELIVERED),
                    EmailOutbox.sent_at > now - timedelta(days=cap.per_days),
                )
            ):
                history[lead_id].append(sent_at)
    batch = []
    for r in rows:
        profile = {name: getattr(r, name) for name in PROFILE_FIELDS}
        scopes = opted_out.get(r.email, {})
        recipient = compliance.Recipient(
            email=r.email,
            timezone=profile["timezone"],
            country=profile["country"],
            consent=profile["consent"],
            unsubscribed=r.unsubscribed_at is not None,
            bounced=r.bounced_at is not None,
            suppressed=scopes.get(ALL) or scopes.get(r.sequence),
            # A completed enrollment still sends its last step; an exited one sends nothing more.
            left_sequence=(r.exit_reason or "exited") if r.enrollment_status == EnrollmentStatus.exited else None,
        )
        lead = {"email": r.email, **profile}
        batch.append(Due(r.id, r.attempts, r.idempotency_key, r.lead_id, r.sequence, r.step, lead, recipient))
    return batch, history


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StepGone(LookupError):
    """The row's sequence or step was removed from the config after it was queued."""


@dataclass
class Composer:
    """Renders and composes the email for a due row (templates cached by the renderer)."""

    config: WorkspaceConfig
    renderer: TemplateRenderer
    links: LinkSigner
    gate: TemplateGate | None = None  # holds a step whose template fails for a lead

    def __post_init__(self) -> None:
        self._steps: dict[str, list[Any]] = {s.name: list(s.steps) for s in self.config.nurture.sequences}
        self._sender = self.config.sender.model_dump()

    def step(self, due: Due) -> Any:
        steps = self._steps.get(due.sequence)
        if steps is None or due.step >= len(steps):
            raise StepGone("step no longer in config")
        return steps[due.step]

    def envelope(self, due: Due) -> Envelope:
        """The finished message; raises StepGone, or whatever a broken template raises."""
        return self.message(due)[1]

    def context(self, due: Due) -> dict[str, Any]:
        """What the templates see for this row."""
        unsubscribe = self.links.unsubscribe_url(due.lead_id, due.sequence)
        return {"lead": due.lead, "sender": self._sender, "unsubscribe_url": unsubscribe}

    def message(self, due: Due) -> tuple[RenderedEmail, Envelope]:
        step = self.step(due)
        context = self.context(due)
        unsubscribe = context["unsubscribe_url"]
        rendered = self.renderer.render(template=step.template, subject=step.subject, context=context)
        html = self.links.track(
            rendered.html, lead_id=due.lead_id, sequence=due.sequence, step=due.step, unsubscribe_url=unsubscribe
        )
        envelope = compose(
            sender=self.config.sender,
            to=due.recipient.email,
            rendered=replace(rendered, html=html),
            idempotency_key=due.key,
            unsubscribe_url=unsubscribe,
        )
        return rendered, envelope


def template_error(composer: Composer, due: Due, exc: Exception) -> str:
    return f"template {composer.step(due).template}: {type(exc).__name__}: {exc}"


def held_error(composer: Composer, due: Due, exc: Exception) -> str:
    """Why a row waits: where its template fails (file:line when the gate can tell)."""
    if composer.gate is None:
        return f"held: {template_error(composer, due, exc)}"
    return f"held: {composer.gate.hold(due.sequence, due.step, exc, composer.context(due)).describe()}"


# --- sending ---------------------------------------------------------------------------------------


class LeaseLost(RuntimeError):
    """Another sender re-claimed the row after this one's lease ran out; it is theirs to send."""


def _row(*, status: bool = False) -> Any:
    """UPDATE email_outbox … WHERE this claim (row id and attempt number: a fencing token)."""
    where = [EmailOutbox.id == bindparam("rid"), EmailOutbox.attempts == bindparam("att")]
    if status:
        where.append(EmailOutbox.status == OutboxStatus.sending)
    return update(EmailOutbox).where(*where).execution_options(synchronize_session=False)


class _Marks:
    """The batch's row updates, built once, buffered and written together.

    Outcomes that need no durability at once (a skip, a deferral, a confirmed send) wait for the
    next commit: a crash before it leaves such a row `sending` (judged again after the lease) or
    `in_flight` (settled as unconfirmed, never re-sent), both safe. The in-flight mark itself, and
    any failure after it, is committed before anything else happens.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.buffered: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.statements = {
            "in_flight": _row(status=True).values(
                status=OutboxStatus.in_flight.value, sent_at=bindparam("at"), message_id=bindparam("mid")
            ),
            "sent": _row().values(
                status=OutboxStatus.sent.value,
                sent_at=bindparam("at"),
                message_id=bindparam("mid"),
                provider_id=bindparam("pid"),
                last_error=None,
            ),
            "finish": _row().values(status=bindparam("st"), last_error=bindparam("err")),
            "unconfirmed": _row().values(
                status=OutboxStatus.unconfirmed.value,
                sent_at=bindparam("at"),
                message_id=bindparam("mid"),
                last_error=bindparam("err"),
            ),
            "defer": _row().values(
                status=OutboxStatus.pending.value,
                attempts=bindparam("att") - 1,  # a deferral is not a delivery attempt
                next_attempt_at=bindparam("until"),
                last_error=bindparam("err"),
            ),
            "retry": _row().values(
                status=OutboxStatus.pending.value,
                next_attempt_at=bindparam("until"),
                last_error=bindparam("err"),
                sent_at=None,
                message_id=None,
            ),
        }

    def later(self, kind: str, due: Due, **values: Any) -> None:
        self.buffered[kind].append({"rid": due.row_id, "att": due.attempts, **values})

    def now(self, kind: str, due: Due, **values: Any) -> None:
        self.later(kind, due, **values)
        self.flush()

    def _write_buffered(self) -> None:
        for kind, rows in self.buffered.items():
            if rows:
                self.connection.execute(self.statements[kind], rows)
        self.buffered.clear()

    def flush(self) -> None:
        self._write_buffered()
        self.connection.commit()

    def in_flight(self, due: Due, envelope: Envelope, now: datetime) -> None:
        """Commit the in-flight mark (and what waited) by compare-and-set; LeaseLost if the claim is gone."""
        self._write_buffered()
        params = {"rid": due.row_id, "att": due.attempts, "at": now, "mid": envelope.message_id}
        result = self.connection.execute(self.statements["in_flight"], params)
        self.connection.commit()
        if result.rowcount != 1:
            raise LeaseLost(due.key)


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
        claimed = and_(EmailOutbox.id.in_(ids), EmailOutbox.status == OutboxStatus.sending)
        batch, history = load_due(connection, claimed, config.compliance, clock())
        connection.commit()
        marks = _Marks(connection)
        try:
            for due in batch:
                outcome, reason, at = _send_one(marks, composer, transport, due, history.get(due.lead_id, ()), clock)
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


def _send_one(
    marks: _Marks, composer: Composer, transport: MailTransport, due: Due, sent: Any, clock: Clock
) -> tuple[Outcome, str, datetime]:
    """Judge, render and deliver one row; returns what became of it, why (for all but sent), and when."""
    now = clock()
    verdict = compliance.check(composer.config.compliance, due.recipient, sent, now)
    if verdict.action == "skip":
        marks.later("finish", due, st=OutboxStatus.skipped.value, err=verdict.reason)
        return Outcome.skipped, verdict.reason, now
    if verdict.action == "defer":
        marks.later("defer", due, until=verdict.until, err=f"deferred: {verdict.reason}")
        return Outcome.deferred, verdict.reason, now
    gate = composer.gate
    if gate is not None and gate.is_held(due.sequence, due.step):
        marks.later("defer", due, until=now + HOLD_PAUSE, err="held: the step's template fails; sent once it is fixed")
        return Outcome.held, f"{due.sequence} step {due.step + 1}", now
    try:
        envelope = composer.envelope(due)
    except StepGone as exc:
        marks.later("finish", due, st=OutboxStatus.skipped.value, err=str(exc))
        return Outcome.skipped, str(exc), now
    except Exception as exc:  # a broken template holds its email (and step), never consumes it
        marks.later("defer", due, until=now + HOLD_PAUSE, err=held_error(composer, due, exc)[:2000])
        return Outcome.held, f"{due.sequence} step {due.step + 1}", now
    try:
        provider_id = transport.deliver(envelope, before_data=lambda: marks.in_flight(due, envelope, clock()))
    except LeaseLost:
        return Outcome.skipped, "lease taken over by another sender", now
    except PermanentMailError as exc:
        marks.connection.rollback()
        with Session(bind=marks.connection) as session:
            suppress(
                session=session,
                lead_id=due.lead_id,
                scope=ALL,
                reason=SuppressionReason.bounced,
                source="smtp",
                now=clock(),
                detail=str(exc),
            )
            session.commit()
        marks.now("finish", due, st=OutboxStatus.failed.value, err=f"permanent: {exc}"[:2000])
        return Outcome.failed, "bounced", now
    except UnconfirmedMailError as exc:
        at = clock()
        marks.now("unconfirmed", due, at=at, mid=envelope.message_id, err=str(exc)[:2000])
        return Outcome.unconfirmed, "", at
    except TransientMailError as exc:
        if _retry_later(marks, due, str(exc), clock()):
            return Outcome.deferred, "transient mail error", now
        return Outcome.failed, "gave up after retries", now
    accepted = clock()  # the server has answered: this is when it took the message
    marks.later("sent", due, at=accepted, mid=envelope.message_id, pid=provider_id[:300])
    return Outcome.sent, "", accepted


def _retry_later(marks: _Marks, due: Due, error: str, now: datetime) -> bool:
    """Exponential backoff with jitter; after MAX_ATTEMPTS the row is dead (returns False) and shown in the report."""
    if due.attempts >= MAX_ATTEMPTS:
        marks.now("finish", due, st=OutboxStatus.dead.value, err=error[:2000])
        return False
    delay = OUTBOX_BACKOFF.wait(due.attempts)
    marks.now("retry", due, until=now + timedelta(seconds=delay), err=error[:2000])
    return True
