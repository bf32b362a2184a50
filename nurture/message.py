"""Building the MIME message: multipart/alternative, one-click unsubscribe, deterministic Message-ID.

The Message-ID is derived from the outbox row's idempotency key, so a retried send is the same
message to every receiving system, never a second one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from leads.config import Sender
from nurture.render import RenderedEmail


def message_id_for(idempotency_key: str, domain: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_message(
    *,
    sender: Sender,
    to: str,
    rendered: RenderedEmail,
    idempotency_key: str,
    unsubscribe_url: str,
    date: datetime | None = None,
) -> EmailMessage:
    """A marketing email with RFC 8058 one-click unsubscribe headers."""
    domain = sender.from_email.rsplit("@", 1)[-1]
    msg = EmailMessage()
    msg["From"] = formataddr((sender.from_name, sender.from_email))
    msg["To"] = to
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id_for(idempotency_key, domain)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Leadflow-Key"] = idempotency_key
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg
