"""Mail transports: a file outbox for development and SMTP for real delivery.

- `envelope`: the message as transports take it, and the `MailTransport` protocol senders use;
- `file_outbox`: `FileOutbox`, one .eml file per Message-ID;
- `smtp`: `SMTPTransport`, one reused connection, failures mapped onto connectors/errors.py;
- `settings`: LEADFLOW_MAIL_URL read into typed settings (`transport_from_url`).
"""

from leadflow.connectors.mail.envelope import BeforeData, Envelope, MailTransport, envelope_of
from leadflow.connectors.mail.file_outbox import FileOutbox
from leadflow.connectors.mail.settings import SmtpSettings, public_mail_url, transport_from_url
from leadflow.connectors.mail.smtp import Security, SMTPTransport

__all__ = [
    "BeforeData",
    "Envelope",
    "FileOutbox",
    "MailTransport",
    "SMTPTransport",
    "Security",
    "SmtpSettings",
    "envelope_of",
    "public_mail_url",
    "transport_from_url",
]
