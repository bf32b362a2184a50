"""The MIME message a recipient's mail client (and the receiving server) sees."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

from leadflow.leads.config.workspace import Sender
from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.message import build_message, message_id_for
from leadflow.nurture.render import TemplateRenderer

SENDER = Sender(
    from_name="Acme Growth Team",
    from_email="hello@acme.example",
    reply_to="team@acme.example",
    postal_address="Acme B.V., Keizersgracht 123, 1015 CJ Amsterdam, The Netherlands",
)
LINKS = LinkSigner(secret_key="test-secret-key", public_base_url="https://mail.acme.example/")
LEAD = {"email": "anna@example.com", **dict.fromkeys(PROFILE_FIELDS), "first_name": "Anna", "company": "Acme"}


def _build(tmp_path: Path, key: str = "nurture:7:0", date: datetime | None = None) -> EmailMessage:
    unsubscribe = LINKS.unsubscribe_url(42, "warm-up")
    rendered = TemplateRenderer(tmp_path).render(
        template="warm-up/1-welcome",
        subject="{{ lead.first_name }}, three signs a lead is ready for sales",
        context={"lead": LEAD, "sender": SENDER.model_dump(), "unsubscribe_url": unsubscribe},
    )
    return build_message(
        sender=SENDER, to=LEAD["email"], rendered=rendered, idempotency_key=key, unsubscribe_url=unsubscribe, date=date
    )


def _wire(msg: EmailMessage) -> EmailMessage:
    """What arrives: the bytes parsed back, as a receiving server would."""
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_multipart_alternative_text_first_then_html(tmp_path: Path) -> None:
    msg = _wire(_build(tmp_path))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    # RFC 2046: alternatives in increasing order of preference, so plain text comes first.
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = (p.get_content() for p in parts)
    assert "Hi Anna," in text and "<" not in text.replace("<https", "")
    assert "Hi Anna,</p>" in html and "<p " in html  # paragraphs carry the inlined email.css


def test_headers(tmp_path: Path) -> None:
    date = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    msg = _wire(_build(tmp_path, date=date))
    assert parseaddr(msg["From"]) == ("Acme Growth Team", "hello@acme.example")
    assert msg["To"] == "anna@example.com"
    assert msg["Reply-To"] == "team@acme.example"
    assert msg["Subject"] == "Anna, three signs a lead is ready for sales"
    assert parsedate_to_datetime(msg["Date"]) == date
    assert msg["Message-ID"].endswith("@acme.example>") and msg["Message-ID"].startswith("<")
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert len(msg.get_all(name) or []) == 1, name


def test_date_defaults_to_now(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    msg = _wire(_build(tmp_path))
    assert before <= parsedate_to_datetime(msg["Date"]) <= datetime.now(UTC)


def test_message_id_is_fixed_by_the_idempotency_key(tmp_path: Path) -> None:
    first = _build(tmp_path, key="nurture:7:0", date=datetime(2026, 1, 1, tzinfo=UTC))
    retry = _build(tmp_path, key="nurture:7:0", date=datetime(2026, 1, 2, tzinfo=UTC))
    next_step = _build(tmp_path, key="nurture:7:1")
    other_lead = _build(tmp_path, key="nurture:8:0")
    assert first["Message-ID"] == retry["Message-ID"] == message_id_for("nurture:7:0", "acme.example")
    assert len({first["Message-ID"], next_step["Message-ID"], other_lead["Message-ID"]}) == 3
    # The key leaks nothing about the lead: the Message-ID is a hash, not the key itself.
    assert "nurture" not in first["Message-ID"]


def test_one_click_unsubscribe_headers(tmp_path: Path) -> None:
    msg = _wire(_build(tmp_path))
    url = LINKS.unsubscribe_url(42, "warm-up")
    assert url.startswith("https://mail.acme.example/u/")  # the trailing slash of the base is not doubled
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # RFC 8058: the one-click URL must be https.
    assert msg["List-Unsubscribe"].startswith("<https://")


def test_footer_in_both_parts_has_unsubscribe_url_and_postal_address(tmp_path: Path) -> None:
    msg = _wire(_build(tmp_path))
    url = LINKS.unsubscribe_url(42, "warm-up")
    text, html = (p.get_content() for p in msg.iter_parts())
    assert url in text and SENDER.postal_address in text
    assert f'href="{url}"' in html and SENDER.postal_address in html
    # The link carries no personal data.
    assert "anna" not in url.lower()


def test_non_ascii_subject_and_name_survive_the_wire(tmp_path: Path) -> None:
    sender = SENDER.model_copy(update={"from_name": "Zoë from Ācme"})
    rendered = TemplateRenderer(tmp_path).render(
        template="warm-up/3-demo",
        subject="Grüße, {{ lead.first_name }} — ready?",
        context={
            "lead": {**LEAD, "first_name": "Zoë"},
            "sender": sender.model_dump(),
            "unsubscribe_url": "https://x.example/u/t",
        },
    )
    msg = _wire(
        build_message(
            sender=sender,
            to="zoe@example.com",
            rendered=rendered,
            idempotency_key="k",
            unsubscribe_url="https://x.example/u/t",
        )
    )
    assert msg["Subject"] == "Grüße, Zoë — ready?"
    assert parseaddr(msg["From"]) == ("Zoë from Ācme", "hello@acme.example")
    assert "Hi Zoë," in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
