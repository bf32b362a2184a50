"""The message as a transport takes it (`Envelope`), and the transport protocol the senders use.

`deliver(envelope, before_data=...)` calls `before_data` after the server accepted the sender and
recipient and right before the message itself goes out (SMTP DATA). An outbox commits an "in
flight" mark there: a process that dies before that point has handed nothing over (the message
may be sent again); one that dies after it may have, so the message is never sent again.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

__all__ = ["BeforeData", "Envelope", "MailTransport", "envelope_of", "envelope_recipients"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A finished message: who it is from and to (the SMTP envelope), its Message-ID, and its bytes (CRLF line ends)."""

    mail_from: str
    rcpt_to: str
    message_id: str
    data: bytes


BeforeData = Callable[[], None]

_WIRE = email.policy.SMTP  # CRLF line ends, as the wire and .eml readers expect


def envelope_of(message: EmailMessage) -> Envelope:
    """An Envelope for a message built with the email package (From, one To, Message-ID)."""
    recipients = envelope_recipients(message)
    if len(recipients) != 1:
        raise ValueError(f"a message needs exactly one To/Cc/Bcc recipient, has {len(recipients)}")
    senders = email.utils.getaddresses([str(message.get("Sender") or message.get("From") or "")])
    mail_from = senders[0][1] if senders else ""
    bcc = message.get_all("Bcc")
    if bcc:
        message = _without_bcc(message)
    return Envelope(mail_from, recipients[0], str(message.get("Message-ID") or ""), message.as_bytes(policy=_WIRE))


def _without_bcc(message: EmailMessage) -> EmailMessage:
    copy = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    del copy["Bcc"]
    return copy


def envelope_recipients(message: EmailMessage) -> list[str]:
    """The RCPT TO list smtplib.send_message will use (To, Cc, Bcc)."""
    fields = [str(v) for h in ("To", "Cc", "Bcc") for v in (message.get_all(h) or [])]
    return [addr for _, addr in email.utils.getaddresses(fields) if addr]


class MailTransport(Protocol):
    """What the senders need: open once, deliver many, close once."""

    def __enter__(self) -> MailTransport: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: EmailMessage) -> str: ...

    def deliver(self, envelope: Envelope, *, before_data: BeforeData | None = None) -> str: ...

    def copies(self) -> Sequence[MailTransport]:
        """The transports a sender may use side by side (this one first)."""
        ...
