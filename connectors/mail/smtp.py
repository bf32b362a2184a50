"""SMTP delivery over one reused connection, with smtplib's failures mapped onto the error tree.

Callers decide what to do with a failure from its class alone: `TransientMailError` means
try again later, `PermanentMailError` means never retry and suppress that recipient,
`UnconfirmedMailError` means the message may or may not have been accepted (the connection died
after the whole message went out, before the server answered), and `MailSetupError` means the
transport itself is misconfigured (bad credentials, TLS trouble, sender refused) and the batch
should stop rather than burn through recipients.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Literal, Self

from leadflow.connectors.errors import (
    MailError,
    MailSetupError,
    PermanentMailError,
    TransientMailError,
    UnconfirmedMailError,
)
from leadflow.connectors.mail.envelope import BeforeData, Envelope, envelope_recipients

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["SMTPTransport", "Security"]

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "ssl"]
_SECURITIES: tuple[str, ...] = ("none", "starttls", "ssl")


class _KeepDataReply:
    """Keeps the server's reply to DATA (it carries the queue id) that smtplib.sendmail drops."""

    last_data_reply: tuple[int, bytes] | None = None

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        reply: tuple[int, bytes] = super().data(msg)  # type: ignore[misc]
        self.last_data_reply = reply
        return reply


class _SMTP(_KeepDataReply, smtplib.SMTP):
    """Plain or STARTTLS connection that remembers the DATA reply."""


class _SMTPSSL(_KeepDataReply, smtplib.SMTP_SSL):
    """Implicit-TLS connection that remembers the DATA reply."""


_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")

# Errors after which the connection is gone but the message was likely never accepted.
_DROPPED_CODES = frozenset({421})


def _is_drop(exc: BaseException) -> bool:
    """True when the server (or network) hung up on a connection we had been reusing."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code in _DROPPED_CODES:
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code in _DROPPED_CODES for code, _ in exc.recipients.values())
    return False


def _reply_text(reply: bytes | str) -> str:
    """Server reply text for messages; servers do not echo our credentials."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


class SMTPTransport:
    """Sends over one SMTP connection for the whole `with` block.

    The connection is opened lazily by the first send (so an empty batch never connects and a
    refused connection surfaces as a per-message TransientMailError), then reused. If a reused
    connection turns out to have been dropped by the server, it reconnects once and resends.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: Security = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connections: int = 1,
    ) -> None:
        if security not in _SECURITIES:
            raise ValueError(f"security must be one of {', '.join(_SECURITIES)}, not {security!r}")
        if not host:
            raise ValueError("SMTP host is required")
        if password is not None and not username:
            raise ValueError("an SMTP password needs a username")
        self.host = host
        self.port = port if port is not None else (465 if security == "ssl" else 25)
        self.security: Security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context
        self._smtp: _SMTP | _SMTPSSL | None = None
        self.connections = connections  # how many of these a sender may use side by side

    def copies(self) -> list[SMTPTransport]:
        """`connections` independent transports (this one first) with the same settings, one per sending thread."""
        twins = [
            SMTPTransport(
                self.host,
                self.port,
                security=self.security,
                username=self.username,
                password=self._password,
                timeout=self.timeout,
                local_hostname=self.local_hostname,
                ssl_context=self._ssl_context,
            )
            for _ in range(self.connections - 1)
        ]
        return [self, *twins]

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"SMTPTransport({self.host!r}, {self.port}, security={self.security!r}{user})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """QUIT politely if still connected; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def _discard(self) -> None:
        """Forget a connection whose state is unknown or gone."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> _SMTP | _SMTPSSL:
        # Host and port go to the constructor, not to a later connect(): smtplib takes the TLS
        # server_hostname (SNI and certificate check) from the constructor's host only.
        smtp: _SMTP | _SMTPSSL
        if self.security == "ssl":
            smtp = _SMTPSSL(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout, context=self._context()
            )
        else:
            smtp = _SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        log.debug("connected to SMTP %s:%s (%s)", self.host, self.port, self.security)
        return smtp

    def _send_once(self, message: EmailMessage) -> str:
        if self._smtp is None or self._smtp.sock is None:
            self._smtp = None
            self._smtp = self._connect()
        smtp = self._smtp
        smtp.last_data_reply = None
        refused = smtp.send_message(message)
        if refused:
            # Only possible with several recipients (leadflow sends one per message): the others
            # got it. A 5xx still means "suppress"; a 4xx-only refusal maps to transient, and a
            # retry would repeat the message for the recipients that accepted it.
            raise smtplib.SMTPRecipientsRefused(refused)
        code, reply = smtp.last_data_reply or (250, b"")
        return f"smtp:{_reply_text(reply) or code}"

    def send(self, message: EmailMessage) -> str:
        """Send one message; returns "smtp:<server's reply to DATA>" (normally the queue id)."""
        recipients = envelope_recipients(message)
        if not recipients:
            raise ValueError("message has no To/Cc/Bcc recipient")
        reused = self._smtp is not None
        try:
            return self._send_once(message)
        except (smtplib.SMTPException, OSError) as exc:
            if not (reused and _is_drop(exc)):
                self._after_failure(exc)
                raise self._map(exc, recipients) from exc
            log.info("SMTP %s:%s dropped the idle connection; reconnecting once", self.host, self.port)
            self._discard()
        try:
            return self._send_once(message)
        except (smtplib.SMTPException, OSError) as exc:
            self._after_failure(exc)
            raise self._map(exc, recipients) from exc

    def deliver(self, envelope: Envelope, *, before_data: BeforeData | None = None) -> str:
        """MAIL FROM and RCPT TO, then `before_data()`, then DATA; returns "smtp:<the server's reply to DATA>".

        Failures before the message's last byte went out raise Transient/Permanent/MailError (the
        server holds nothing); no answer after it raises UnconfirmedMailError. An exception from
        `before_data` resets the transaction (nothing is sent) and propagates.
        """
        reused = self._smtp is not None
        try:
            self._open_transaction(envelope)
        except (smtplib.SMTPException, OSError) as exc:
            if not (reused and _is_drop(exc)):
                self._after_failure(exc)
                raise self._map(exc, [envelope.rcpt_to]) from exc
            log.info("SMTP %s:%s dropped the idle connection; reconnecting once", self.host, self.port)
            self._discard()
            try:
                self._open_transaction(envelope)
            except (smtplib.SMTPException, OSError) as again:
                self._after_failure(again)
                raise self._map(again, [envelope.rcpt_to]) from again
        if before_data is not None:
            try:
                before_data()
            except BaseException:
                self._reset()
                raise
        return self._data(envelope)

    def _open_transaction(self, envelope: Envelope) -> None:
        if self._smtp is None or self._smtp.sock is None:
            self._smtp = None
            self._smtp = self._connect()
        smtp = self._smtp
        options: list[str] = []
        if not (envelope.mail_from.isascii() and envelope.rcpt_to.isascii()) and smtp.has_extn("smtputf8"):
            options.append("SMTPUTF8")
        # putcmd rather than smtp.mail()/rcpt(): those re-parse each address with the email
        # package, a tenth of the time an email takes here. The addresses come from validated
        # config and normalised lead emails; a line break in one would still be refused below.
        if "\r" in envelope.mail_from + envelope.rcpt_to or "\n" in envelope.mail_from + envelope.rcpt_to:
            raise smtplib.SMTPRecipientsRefused({envelope.rcpt_to: (501, b"line break in an address")})
        smtp.putcmd("mail", f"FROM:<{envelope.mail_from}>" + "".join(f" {o}" for o in options))
        code, reply = smtp.getreply()
        if code != 250:
            self._reset(code)
            raise smtplib.SMTPSenderRefused(code, reply, envelope.mail_from)
        smtp.putcmd("rcpt", f"TO:<{envelope.rcpt_to}>")
        code, reply = smtp.getreply()
        if code not in (250, 251):
            self._reset(code)
            raise smtplib.SMTPRecipientsRefused({envelope.rcpt_to: (code, reply)})

    def _data(self, envelope: Envelope) -> str:
        smtp = self._smtp
        assert smtp is not None
        try:
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                self._reset(code)
                raise smtplib.SMTPDataError(code, reply)
            payload = _DOT_AT_LINE_START.sub(b"..", envelope.data)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            smtp.send(payload + b".\r\n")
        except (smtplib.SMTPException, OSError) as exc:
            # The end-of-data mark never went out whole: the server discards what it got.
            self._after_failure(exc)
            raise self._map(exc, [envelope.rcpt_to]) from exc
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._discard()
            raise UnconfirmedMailError(
                f"SMTP {self.host}:{self.port} gave no answer after the message for {envelope.rcpt_to} went out"
                f" ({type(exc).__name__}); it may have been delivered"
            ) from exc
        if code != 250:
            self._reset(code)
            raise self._map(smtplib.SMTPDataError(code, reply), [envelope.rcpt_to])
        return f"smtp:{_reply_text(reply) or code}"

    def _reset(self, code: int | None = None) -> None:
        """Abandon the current transaction (RSET), or the connection when the server is closing it."""
        if self._smtp is None:
            return
        if code == 421:
            self._discard()
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard()

    def _after_failure(self, exc: BaseException) -> None:
        """Keep the connection only when smtplib left it in a known state (it RSETs after refusals)."""
        if self._smtp is None:
            return
        # smtplib.SMTPException subclasses OSError, so test for "socket trouble" explicitly.
        socket_trouble = isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
        if self._smtp.sock is None or socket_trouble or _is_drop(exc):
            self._discard()

    def _map(self, exc: BaseException, recipients: list[str]) -> MailError:
        """Translate smtplib's zoo of errors into retry / suppress / stop."""
        where = f"SMTP {self.host}:{self.port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = {rcpt: (code, _reply_text(msg)) for rcpt, (code, msg) in exc.recipients.items()}
            for rcpt, (code, text) in codes.items():
                if 500 <= code < 600:
                    return PermanentMailError(f"{where} refused {rcpt}: {code} {text}", recipient=rcpt, code=code)
            rcpt, (code, text) = next(iter(codes.items()), ("?", (0, "")))
            return TransientMailError(f"{where} deferred {rcpt}: {code} {text}", code=code or None)
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            # Never include what we sent; the server's reply is safe.
            if 400 <= exc.smtp_code < 500:
                return TransientMailError(f"{where} login deferred: {exc.smtp_code}", code=exc.smtp_code)
            return MailSetupError(
                f"{where} rejected the login for {self.username!r}: {exc.smtp_code}", code=exc.smtp_code
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            code, text = exc.smtp_code, _reply_text(exc.smtp_error)
            if 400 <= code < 500:
                return TransientMailError(f"{where} deferred: {code} {text}", code=code)
            if isinstance(exc, smtplib.SMTPDataError) and 500 <= code < 600 and recipients:
                return PermanentMailError(
                    f"{where} rejected the message for {recipients[0]}: {code} {text}",
                    recipient=recipients[0],
                    code=code,
                )
            return MailSetupError(f"{where} refused: {code} {text}", code=code)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientMailError(f"{where} closed the connection")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return MailSetupError(f"{where} TLS certificate not trusted: {exc.verify_message}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return MailSetupError(f"{where} lacks a needed extension: {exc}")
        if isinstance(exc, TimeoutError):
            return TransientMailError(f"{where} timed out after {self.timeout:g}s")
        if isinstance(exc, OSError):
            return TransientMailError(f"{where} unreachable: {type(exc).__name__}: {exc.strerror or exc}")
        return MailSetupError(f"{where} failed: {type(exc).__name__}")
