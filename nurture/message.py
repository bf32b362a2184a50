"""Building the MIME message: multipart/alternative, one-click unsubscribe, deterministic Message-ID.

The Message-ID is derived from the outbox row's idempotency key, so a retried send is the same
message to every receiving system, never a second one.

Messages are written straight to bytes (`compose`) rather than through the email package's object
model, which costs about a millisecond per message and would cap delivery near 1,000 a second on
its own; `build_message` parses those bytes back for callers that want an EmailMessage.

Internationalised addresses (RFC 6531): a Unicode domain goes on the wire IDNA-encoded, so the
message stays 7-bit. A Unicode local part can only travel through a server that offers SMTPUTF8,
which the message alone cannot promise: `compose` raises NeedsSmtpUtf8, a per-lead failure.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from email_validator import EmailNotValidError, validate_email

from leadflow.connectors.mail import Envelope
from leadflow.leads.config.workspace import Sender
from leadflow.nurture.render import RenderedEmail

_CRLF = "\r\n"


class NeedsSmtpUtf8(ValueError):
    """The recipient's local part is not ASCII: only a mail server offering SMTPUTF8 can deliver it."""


def wire_address(address: str) -> str:
    """The address as it goes into the envelope and the To header: ASCII, the domain IDNA-encoded.

    Raises NeedsSmtpUtf8 for a non-ASCII local part (`jürgen@...`), ValueError for no mailbox at all.
    """
    if address.isascii():
        return address
    local = address.rpartition("@")[0]
    if not local.isascii():
        raise NeedsSmtpUtf8(f"needs SMTPUTF8: the address {address!r} has a non-ASCII local part")
    try:
        return validate_email(address, check_deliverability=False).ascii_email or address
    except EmailNotValidError as exc:
        raise ValueError(f"not one valid mailbox: {address!r}: {exc}") from None


def message_id_for(idempotency_key: str, domain: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _one_line(value: str) -> str:
    """Header text on one line: a template or a config value must not be able to add headers."""
    return " ".join(value.split())


def _header(name: str, value: str) -> str:
    value = _one_line(value)
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}"
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=_CRLF)


def _qp_part(content_type: str, body: str) -> str:
    """A UTF-8 text part, quoted-printable: 7-bit safe, lines under 77 characters, '=' always escaped."""
    data = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).decode("ascii")
    return (
        f'Content-Type: {content_type}; charset="utf-8"{_CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{_CRLF}{_CRLF}" + encoded.replace("\n", _CRLF)
    )


def compose(
    *,
    sender: Sender,
    to: str,
    rendered: RenderedEmail,
    idempotency_key: str,
    unsubscribe_url: str,
    date: datetime | None = None,
) -> Envelope:
    """A marketing email with RFC 8058 one-click unsubscribe headers, as the bytes that go on the wire.

    Raises NeedsSmtpUtf8 when `to` has a non-ASCII local part (see `wire_address`)."""
    to = wire_address(to)
    domain = sender.from_email.rsplit("@", 1)[-1]
    message_id = message_id_for(idempotency_key, domain)
    # Quoted-printable escapes every '=', so a boundary starting with "=_" can never occur in a body.
    boundary = "=_lf_" + message_id[1:17]
    headers = [
        f"From: {formataddr((_one_line(sender.from_name), sender.from_email), charset='utf-8')}",
        f"To: {_one_line(to)}",
    ]
    if sender.reply_to:
        headers.append(_header("Reply-To", sender.reply_to))
    headers += [
        _header("Subject", rendered.subject),
        f"Date: {format_datetime(date or datetime.now(UTC))}",
        f"Message-ID: {message_id}",
        f"List-Unsubscribe: <{_one_line(unsubscribe_url)}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        f"X-Leadflow-Key: {_one_line(idempotency_key)}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    text = (
        _CRLF.join(headers)
        + f"{_CRLF}{_CRLF}--{boundary}{_CRLF}"
        + _qp_part("text/plain", rendered.text)
        + f"{_CRLF}--{boundary}{_CRLF}"
        + _qp_part("text/html", rendered.html)
        + f"{_CRLF}--{boundary}--{_CRLF}"
    )
    return Envelope(mail_from=sender.from_email, rcpt_to=to, message_id=message_id, data=text.encode("ascii"))


def build_message(
    *,
    sender: Sender,
    to: str,
    rendered: RenderedEmail,
    idempotency_key: str,
    unsubscribe_url: str,
    date: datetime | None = None,
) -> EmailMessage:
    """The same message as `compose`, as an EmailMessage (for previews and tests)."""
    envelope = compose(
        sender=sender,
        to=to,
        rendered=rendered,
        idempotency_key=idempotency_key,
        unsubscribe_url=unsubscribe_url,
        date=date,
    )
    parsed = email.message_from_bytes(envelope.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
