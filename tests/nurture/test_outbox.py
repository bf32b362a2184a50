"""Sending the email outbox: claim, compliance at send time, delivery, and what each outcome does to the row.

Rows are queued by the real enrollment code, delivered through a real FileOutbox or a real
aiosmtpd server on loopback, and checked in the real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.connectors.mail import FileOutbox, SMTPTransport
from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import (
    Activity,
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Stage,
    Suppression,
    utcnow,
)
from leadflow.nurture import tokens
from leadflow.nurture.delivery import MAX_ATTEMPTS
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.held import TemplateGate
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.message import message_id_for
from leadflow.nurture.outbox import LEASE, claim, send_claimed
from leadflow.nurture.outcomes import SendReport
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.steps import queue_due_steps
from tests import factories as make
from tests.peers import DEFERRED, REJECTED, RecordingHandler

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
SECRET = "outbox-test-secret"
LINKS = LinkSigner(secret_key=SECRET, public_base_url="https://mail.acme.example")


@pytest.fixture
def config() -> WorkspaceConfig:
    return load_config(EXAMPLE)


@pytest.fixture
def renderer(tmp_path: Path) -> TemplateRenderer:
    return TemplateRenderer(tmp_path / "templates")  # empty workspace folder: the shipped templates


def _queue(engine: Engine, config: WorkspaceConfig, now: datetime, *addresses: str) -> dict[str, int]:
    """Prospects with these addresses, enrolled in warm-up with step 0 queued; returns {email: lead id}."""
    with session_scope(engine) as session:
        leads = [
            make.lead(a, first_name=a.split("@")[0].title(), company="Acme", stage=Stage.prospect) for a in addresses
        ]
        session.add_all(leads)
        session.flush()
        ids = {lead.email: lead.id for lead in leads}
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=now)
        assert queue_due_steps(session=session, config=config, now=now) == len(addresses)
    return ids  # type: ignore[return-value]


def _claim(engine: Engine, now: datetime, limit: int = 100) -> list[int]:
    with session_scope(engine) as session:
        return claim(session=session, now=now, limit=limit)


def _rows(engine: Engine) -> dict[int, EmailOutbox]:
    """Outbox rows by lead id (one queued step per lead in these tests)."""
    with Session(engine) as session:
        return {row.lead_id: row for row in session.scalars(select(EmailOutbox))}


def _lead(engine: Engine, lead_id: int) -> Lead:
    with Session(engine) as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        return lead


def _send(
    engine: Engine, ids: list[int], config: WorkspaceConfig, renderer: TemplateRenderer, transport: Any, now: datetime
) -> SendReport:
    return send_claimed(
        engine=engine, ids=ids, config=config, renderer=renderer, transport=transport, links=LINKS, now=now
    )


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# --- a real SMTP server on loopback ------------------------------------------------------------


def _recipients(handler: RecordingHandler) -> Counter[str]:
    return Counter(r for received in handler.messages for r in received.rcpt_tos)


def _smtp_transport(port: int) -> SMTPTransport:
    return SMTPTransport("127.0.0.1", port, timeout=5.0, local_hostname="leadflow.test")


# --- claim ---------------------------------------------------------------------------------------


def test_claim_leases_due_rows_once(engine: Engine, config: WorkspaceConfig) -> None:
    now = utcnow()
    _queue(engine, config, now, "a@example.com", "b@example.com", "c@example.com")
    assert _claim(engine, now - timedelta(seconds=1)) == []  # not due yet

    first = _claim(engine, now, limit=2)
    rest = _claim(engine, now, limit=10)
    assert len(first) == 2 and len(rest) == 1 and not set(first) & set(rest)
    assert _claim(engine, now) == []  # everything is leased

    for row in _rows(engine).values():
        assert row.status == OutboxStatus.sending
        assert row.attempts == 1
        assert row.next_attempt_at == now + LEASE


# --- FileOutbox ----------------------------------------------------------------------------------


def test_send_through_file_outbox_writes_eml_and_marks_rows_sent(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, tmp_path: Path
) -> None:
    now = utcnow()
    ids = _queue(engine, config, now, "anna@example.com", "bo@example.com", "cy@example.com")
    claimed = _claim(engine, now)
    outbox_dir = tmp_path / "outbox"
    with FileOutbox(outbox_dir) as transport:
        report = _send(engine, claimed, config, renderer, transport, now)
    assert (report.sent, report.skipped, report.deferred, report.failed) == (3, Counter(), Counter(), Counter())

    files = sorted(outbox_dir.glob("*.eml"))
    assert len(files) == 3
    by_to = {(m := _parse(f.read_bytes()))["To"]: (f, m) for f in files}
    assert set(by_to) == set(ids)

    rows = _rows(engine)
    for address, lead_id in ids.items():
        row = rows[lead_id]
        path, msg = by_to[address]
        assert row.status == OutboxStatus.sent
        assert row.message_id is not None and row.message_id == msg["Message-ID"]
        assert row.provider_id == str(path)
        assert row.sent_at is not None and row.last_error is None
        assert msg["Subject"] == f"{address.split('@')[0].title()}, three signs a lead is ready for sales"
        assert msg["List-Unsubscribe"] == f"<{LINKS.unsubscribe_url(lead_id, 'warm-up')}>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_content_type() == "multipart/alternative"

    assert _claim(engine, now + timedelta(days=1)) == []  # sent rows are never claimed again


def test_unsubscribed_or_bounced_after_queuing_is_skipped_at_send_time(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, tmp_path: Path
) -> None:
    now = utcnow()
    ids = _queue(engine, config, now, "stays@example.com", "leaves@example.com", "bounced@example.com")
    # Between queuing and sending, one lead clicks unsubscribe and another bounces elsewhere.
    with session_scope(engine) as session:
        session.get(Lead, ids["leaves@example.com"]).unsubscribed_at = now  # type: ignore[union-attr]
        session.get(Lead, ids["bounced@example.com"]).bounced_at = now  # type: ignore[union-attr]

    with FileOutbox(tmp_path / "outbox") as transport:
        report = _send(engine, _claim(engine, now), config, renderer, transport, now)
    assert report.sent == 1
    assert report.skipped == Counter({"unsubscribed": 1, "bounced": 1})

    rows = _rows(engine)
    assert rows[ids["stays@example.com"]].status == OutboxStatus.sent
    for address, reason in (("leaves@example.com", "unsubscribed"), ("bounced@example.com", "bounced")):
        row = rows[ids[address]]
        assert (row.status, row.last_error, row.message_id, row.sent_at) == (OutboxStatus.skipped, reason, None, None)
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert [_parse(f.read_bytes())["To"] for f in files] == ["stays@example.com"]
    assert _claim(engine, now + timedelta(days=1)) == []  # skipped rows stay skipped


def test_a_lead_that_left_the_sequence_after_queuing_gets_nothing_more(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, tmp_path: Path
) -> None:
    """An email queued (then held back, say by quiet hours) must not go out once the lead replied or converted."""
    now = utcnow()
    ids = _queue(engine, config, now, "stays@example.com", "replied@example.com")
    with session_scope(engine) as session:
        enrollment = session.scalars(
            select(NurtureEnrollment).where(NurtureEnrollment.lead_id == ids["replied@example.com"])
        ).one()
        enrollment.status, enrollment.exit_reason, enrollment.exited_at = EnrollmentStatus.exited, "replied", now

    with FileOutbox(tmp_path / "outbox") as transport:
        report = _send(engine, _claim(engine, now), config, renderer, transport, now)
    assert report.sent == 1
    assert report.skipped == Counter({"left the sequence: replied": 1})
    rows = _rows(engine)
    assert rows[ids["replied@example.com"]].status == OutboxStatus.skipped
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert [_parse(f.read_bytes())["To"] for f in files] == ["stays@example.com"]


def test_step_removed_from_config_after_queuing_is_skipped(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, tmp_path: Path
) -> None:
    now = utcnow()
    ids = _queue(engine, config, now, "a@example.com")
    edited = config.model_copy(update={"nurture": config.nurture.model_copy(update={"sequences": []})})
    with FileOutbox(tmp_path / "outbox") as transport:
        report = _send(engine, _claim(engine, now), edited, renderer, transport, now)
    assert report.skipped == Counter({"step no longer in config": 1})
    assert _rows(engine)[ids["a@example.com"]].status == OutboxStatus.skipped
    assert not list((tmp_path / "outbox").glob("*.eml"))


# --- real SMTP ----------------------------------------------------------------------------------


def test_every_message_arrives_once_with_one_click_unsubscribe(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    now = utcnow()
    ids = _queue(engine, config, now, *(f"lead{i}@example.com" for i in range(5)))
    with _smtp_transport(port) as transport:
        report = _send(engine, _claim(engine, now), config, renderer, transport, now)
    assert report.sent == 5
    assert _recipients(mailbox) == Counter(list(ids))

    rows = _rows(engine)
    for received in mailbox.messages:
        rcpts, msg = received.rcpt_tos, received.message
        lead_id = ids[rcpts[0]]
        row = rows[lead_id]
        assert msg["To"] == rcpts[0]
        assert msg["From"] == "Acme Growth Team <hello@acme.example>"
        assert msg["Message-ID"] == row.message_id == message_id_for(row.idempotency_key, "acme.example")
        assert abs(parsedate_to_datetime(msg["Date"]).replace(tzinfo=None) - utcnow()) < timedelta(minutes=1)
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert row.status == OutboxStatus.sent and row.provider_id and row.provider_id.startswith("smtp:2.0.0 Ok")
        # RFC 8058 one-click unsubscribe, with a link the web endpoint can verify.
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = msg["List-Unsubscribe"]
        assert unsubscribe.startswith("<https://mail.acme.example/u/") and unsubscribe.endswith(">")
        token = unsubscribe[1:-1].rsplit("/", 1)[1]
        assert tokens.verify(SECRET, "unsubscribe", token) == [str(lead_id), "warm-up"]
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert unsubscribe[1:-1] in text and unsubscribe[1:-1] in html
        assert config.sender.postal_address in text and config.sender.postal_address in html


def test_550_suppresses_that_recipient_while_the_batch_goes_on(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    now = utcnow()
    ids = _queue(engine, config, now, "first@example.com", REJECTED, "last@example.com")
    with _smtp_transport(port) as transport:
        report = _send(engine, _claim(engine, now), config, renderer, transport, now)
    assert report.sent == 2 and report.failed == Counter({"bounced": 1})
    assert _recipients(mailbox) == Counter({"first@example.com": 1, "last@example.com": 1})
    assert mailbox.connections == 1  # the refusal did not cost the connection

    rows = _rows(engine)
    gone = rows[ids[REJECTED]]
    assert gone.status == OutboxStatus.failed and gone.sent_at is None and gone.message_id is None
    assert gone.last_error is not None and "550" in gone.last_error and REJECTED in gone.last_error
    assert _lead(engine, ids[REJECTED]).bounced_at is not None
    for address in ("first@example.com", "last@example.com"):
        assert rows[ids[address]].status == OutboxStatus.sent
        assert _lead(engine, ids[address]).bounced_at is None
    # Suppressed through the one writer of opt-outs: the log (reason bounced, from smtp), the
    # lead's enrollment ended at once, and a bounce activity for scoring.
    with Session(engine) as session:
        logged = session.scalars(select(Suppression)).all()
        assert [(s.email, s.scope, s.reason, s.source) for s in logged] == [(REJECTED, "all", "bounced", "smtp")]
        enrollment = session.scalars(select(NurtureEnrollment).where(NurtureEnrollment.lead_id == ids[REJECTED])).one()
        assert (enrollment.status, enrollment.exit_reason) == (EnrollmentStatus.exited, "bounced")
        bounces = session.scalars(select(Activity).where(Activity.type == "email_bounce")).all()
        assert [a.lead_id for a in bounces] == [ids[REJECTED]]

    # A failed row is never retried, and later steps of the others are not held back.
    assert _claim(engine, now + timedelta(days=1)) == []


def test_451_defers_the_row_for_a_later_attempt(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    now = utcnow()
    ids = _queue(engine, config, now, DEFERRED, "ok@example.com")
    with _smtp_transport(port) as transport:
        report = _send(engine, _claim(engine, now), config, renderer, transport, now)
    assert report.sent == 1 and report.deferred == Counter({"transient mail error": 1}) and not report.failed
    assert _recipients(mailbox) == Counter({"ok@example.com": 1})

    row = _rows(engine)[ids[DEFERRED]]
    assert row.status == OutboxStatus.pending
    assert row.attempts == 1
    # First retry about 30 s after this run (with jitter), not immediately and not in hours.
    assert now + timedelta(seconds=20) < row.next_attempt_at < now + timedelta(seconds=40)
    assert row.last_error is not None and "451" in row.last_error
    assert row.message_id is None and row.sent_at is None
    assert _lead(engine, ids[DEFERRED]).bounced_at is None  # a deferral is not a bounce

    assert _claim(engine, now + timedelta(seconds=19)) == []  # not before its time
    assert _claim(engine, row.next_attempt_at) == [row.id]  # then it comes back


def test_a_row_deferred_too_often_is_dead(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer, smtp_server: tuple[RecordingHandler, int]
) -> None:
    _, port = smtp_server
    now = utcnow()
    ids = _queue(engine, config, now, DEFERRED)
    with _smtp_transport(port) as transport:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            at = now + timedelta(days=attempt)
            claimed = _claim(engine, at)
            assert len(claimed) == 1, attempt
            _send(engine, claimed, config, renderer, transport, at)
    row = _rows(engine)[ids[DEFERRED]]
    assert row.status == OutboxStatus.dead and row.attempts == MAX_ATTEMPTS
    assert row.last_error is not None and "451" in row.last_error
    assert _claim(engine, now + timedelta(days=30)) == []


def test_a_broken_template_holds_its_row_and_step_and_the_batch_goes_on(
    engine: Engine, config: WorkspaceConfig, tmp_path: Path
) -> None:
    """A template that breaks for one lead (arithmetic on an empty field) holds that email, and its step, unsent.

    The row goes back to pending with no attempt counted and the error's file and line; with the
    run's gate the step is held, so later rows of it wait too, unrendered, until the fix.
    """
    templates = tmp_path / "templates" / "warm-up"
    templates.mkdir(parents=True)
    for part in ("html", "txt"):
        (templates / f"1-welcome.{part}").write_text(
            f'{{% extends "base.{part}" %}}{{% block content %}}\n{{{{ 1000 // lead.company_size }}}}{{% endblock %}}'
        )
    now = utcnow()
    ids = _queue(engine, config, now, "sized@example.com", "unsized@example.com", "later@example.com")
    with session_scope(engine) as session:
        session.get(Lead, ids["sized@example.com"]).company_size = 50  # type: ignore[union-attr]
        session.get(Lead, ids["later@example.com"]).company_size = 80  # type: ignore[union-attr]
    gate = TemplateGate(config, tmp_path / "templates")
    with FileOutbox(tmp_path / "outbox") as transport:
        report = send_claimed(
            engine=engine,
            ids=_claim(engine, now),
            config=config,
            renderer=TemplateRenderer(tmp_path / "templates"),
            transport=transport,
            links=LINKS,
            now=now,
            gate=gate,
        )
    assert report.sent == 1 and not report.failed and report.held == Counter({"warm-up step 1": 2})
    rows = _rows(engine)
    assert rows[ids["sized@example.com"]].status == OutboxStatus.sent
    for address in ("unsized@example.com", "later@example.com"):
        held = rows[ids[address]]
        assert (held.status, held.attempts, held.sent_at) == (OutboxStatus.pending, 0, None)
        assert held.last_error is not None and held.last_error.startswith("held: ")
    assert "templates/warm-up/1-welcome.html:2: " in (rows[ids["unsized@example.com"]].last_error or "")
    assert [(h.sequence, h.index, h.where) for h in gate.held()] == [
        ("warm-up", 0, "templates/warm-up/1-welcome.html:2")
    ]
    with session_scope(engine) as session:  # while the step is held, a sender leaves them alone ...
        assert claim(session=session, now=now, limit=100, held=gate.held_steps()) == []
    waiting = {rows[ids[a]].id for a in ("unsized@example.com", "later@example.com")}
    assert _claim(engine, now) == []  # ... the run that held them never takes them again ...
    assert set(_claim(engine, now + timedelta(seconds=1))) == waiting  # ... the next run, after the fix, does


# --- after the in-flight mark: a refusal is retried, silence is unconfirmed -------------------------


@dataclass
class DataAnswers(RecordingHandler):
    """Answers the end of DATA with 451 for one recipient, or hangs up without answering for another."""

    refuse: str = ""
    hang_up: str = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.rcpt_tos == [self.refuse]:
            return "451 4.3.0 Queue full, try later"
        reply = await super().handle_DATA(server, session, envelope)
        if envelope.rcpt_tos == [self.hang_up]:
            server.transport.close()
        return reply


def test_after_the_in_flight_mark_a_4xx_is_retried_and_silence_is_unconfirmed(
    engine: Engine, config: WorkspaceConfig, renderer: TemplateRenderer
) -> None:
    from aiosmtpd.controller import Controller

    from tests.peers import free_port

    handler = DataAnswers(refuse="full@example.com", hang_up="silent@example.com")
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        now = utcnow()
        ids = _queue(engine, config, now, "full@example.com", "silent@example.com", "fine@example.com")
        with _smtp_transport(port) as transport:
            report = _send(engine, _claim(engine, now), config, renderer, transport, now)
        assert (report.sent, report.unconfirmed) == (1, 1)
        assert report.deferred == Counter({"transient mail error": 1})
        rows = _rows(engine)
        full, silent = rows[ids["full@example.com"]], rows[ids["silent@example.com"]]
        # The server said no to the message: nothing was delivered, so it goes again later.
        assert (full.status, full.message_id, full.sent_at) == (OutboxStatus.pending, None, None)
        assert full.last_error is not None and "451" in full.last_error
        # No answer after the whole message went out: it may have arrived, so it is never sent again.
        assert silent.status == OutboxStatus.unconfirmed and silent.message_id is not None
        assert "may have been delivered" in (silent.last_error or "")
        assert rows[ids["fine@example.com"]].status == OutboxStatus.sent

        later = full.next_attempt_at
        handler.refuse = ""
        with _smtp_transport(port) as transport:
            again = _send(engine, _claim(engine, later), config, renderer, transport, later)
        assert again.sent == 1
        assert _recipients(handler) == Counter(["full@example.com", "silent@example.com", "fine@example.com"])
    finally:
        controller.stop()
