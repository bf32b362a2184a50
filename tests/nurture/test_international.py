"""Internationalised addresses (issue 16): IDNA domains go out, Unicode local parts fail with a clear reason."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.connectors.mail import FileOutbox
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, Lead, OutboxStatus, Stage
from leadflow.leads.ingest.records import normalise_email
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.message import NeedsSmtpUtf8, compose, wire_address
from leadflow.nurture.outbox import claim, send_claimed
from leadflow.nurture.render import RenderedEmail, TemplateRenderer
from leadflow.nurture.steps import queue_due_steps

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
LINKS = LinkSigner(secret_key="idn-test-secret", public_base_url="https://mail.acme.example")
NOW = datetime(2026, 11, 3, 10, 0)


def test_a_unicode_domain_goes_on_the_wire_idna_encoded() -> None:
    config = load_config(EXAMPLE)
    to = normalise_email("Anna@Bücher.example")
    assert to == "anna@bücher.example"
    envelope = compose(
        sender=config.sender,
        to=to,
        rendered=RenderedEmail(subject="Hallo", html="<p>Hallo</p>", text="Hallo"),
        idempotency_key="nurture:1:0",
        unsubscribe_url="https://mail.acme.example/u",
    )
    assert envelope.rcpt_to == "anna@xn--bcher-kva.example"
    assert b"\r\nTo: anna@xn--bcher-kva.example\r\n" in envelope.data
    envelope.data.decode("ascii")  # 7-bit: any server takes it


def test_a_unicode_local_part_needs_smtputf8() -> None:
    with pytest.raises(NeedsSmtpUtf8, match="needs SMTPUTF8"):
        wire_address("jürgen@müller.example")
    assert wire_address("anna@example.com") == "anna@example.com"


def test_sending_to_a_unicode_local_part_fails_that_email_alone(engine: Engine, tmp_path: Path) -> None:
    """Not a template error holding the step on every run: one failed email with the reason; the rest go out."""
    config = load_config(EXAMPLE)
    with session_scope(engine) as session:
        for address in ("jürgen@müller.example", "anna@bücher.example", "bob@example.com"):
            session.add(Lead(email=normalise_email(address), first_name="X", stage=Stage.prospect))
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=NOW)
        assert queue_due_steps(session=session, config=config, now=NOW) == 3
    with session_scope(engine) as session:
        ids = claim(session=session, now=NOW, limit=10)
    with FileOutbox(tmp_path / "outbox") as transport:
        report = send_claimed(
            engine=engine, ids=ids, config=config, renderer=TemplateRenderer(tmp_path / "templates"),
            transport=transport, links=LINKS, now=NOW,
        )  # fmt: skip
    assert report.sent == 2 and report.failed == Counter({"needs SMTPUTF8": 1}) and not report.held
    with Session(engine) as session:
        rows = {
            email: (status, error)
            for email, status, error in session.execute(
                select(Lead.email, EmailOutbox.status, EmailOutbox.last_error).join(
                    Lead, Lead.id == EmailOutbox.lead_id
                )
            )
        }
    assert rows["jürgen@müller.example"][0] == OutboxStatus.failed
    assert "needs SMTPUTF8" in (rows["jürgen@müller.example"][1] or "")
    assert rows["anna@bücher.example"][0] == OutboxStatus.sent
    written = b"".join(p.read_bytes() for p in (tmp_path / "outbox").iterdir())
    assert b"To: anna@xn--bcher-kva.example" in written
