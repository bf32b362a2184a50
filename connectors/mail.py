"""Mail transports: a file outbox for development and SMTP for real delivery.

Callers decide what to do with a failure from its class alone: `TransientMailError` means
try again later, `PermanentMailError` means never retry and suppress that recipient,
`UnconfirmedMailError` means the message may or may not have been accepted (the connection died
after the whole message went out, before the server answered), and a bare `MailError` means the
transport itself is misconfigured (bad credentials, TLS trouble, sender refused) and the batch
should stop rather than burn through recipients.

`deliver(envelope, before_data=...)` calls `before_data` after the server accepted the sender and
recipient and right before the message itself goes out (SMTP DATA). An outbox commits an "in
flight" mark there: a process that dies before that point has handed nothing over (the message
may be sent again); one that dies after it may have, so the message is never sent again.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from leadflow.connectors.errors import (
    MailError,
    MailSetupError,
    PermanentMailError,
    TransientMailError,
    UnconfirmedMailError,
)
from leadflow.connectors.keyed_files import atomic_write, file_stem

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "Envelope",
    "FileOutbox",
    "MailError",
    "MailTransport",
    "PermanentMailError",
    "SMTPTransport",
    "Security",
    "TransientMailError",
    "UnconfirmedMailError",
    "public_mail_url",
    "transport_from_url",
]

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "ssl"]
MAX_CONNECTIONS = 16
_SECURITIES: tuple[str, ...] = ("none", "starttls", "ssl")


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
    recipients = _envelope_recipients(message)
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
    return copy  # type: ignore[return-value]


class MailTransport(Protocol):
    """What the senders need: open once, deliver many, close once."""

    def __enter__(self) -> MailTransport: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: EmailMessage) -> str: ...

    def deliver(self, envelope: Envelope, *, before_data: BeforeData | None = None) -> str: ...

    def copies(self) -> list[MailTransport]:
        """The transports a sender may use side by side (this one first)."""
        ...


# --- file outbox ---------------------------------------------------------------------------


class FileOutbox:
    """Writes each message to <directory>/<Message-ID>.eml so development never mails anyone.

    The file name comes from the Message-ID, so re-sending a message after a crash overwrites
    its file instead of adding a second copy, the same guarantee the SMTP path gets from
    idempotency keys upstream.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileOutbox({str(self.directory)!r})"

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def copies(self) -> list[FileOutbox]:
        """One: files are written one at a time."""
        return [self]

    def path_for(self, message_id: str) -> Path:
        """Where a message with this Message-ID is (or would be) written."""
        key = message_id.strip().removeprefix("<").removesuffix(">").strip()
        if not key:
            raise ValueError("Message-ID is empty")
        return self.directory / f"{file_stem(key)}.eml"

    def send(self, message: EmailMessage) -> str:
        """Write the message; returns the file path as the provider id."""
        message_id = message["Message-ID"]
        if message_id is None or not str(message_id).strip():
            raise ValueError("FileOutbox needs a Message-ID header to name the file idempotently")
        return self._write(str(message_id), message.as_bytes())

    def deliver(self, envelope: Envelope, *, before_data: BeforeData | None = None) -> str:
        """Write the message bytes.

        `before_data` is not called: writing the same Message-ID again replaces the same file, so
        a row whose writer died is simply written again (exactly one file either way).
        """
        if not envelope.message_id.strip():
            raise ValueError("FileOutbox needs a Message-ID to name the file idempotently")
        return self._write(envelope.message_id, envelope.data.replace(b"\r\n", b"\n"))

    def _write(self, message_id: str, data: bytes) -> str:
        path = self.path_for(message_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise TransientMailError(f"could not write {path}: {exc.strerror or exc}") from exc
        return str(path)


# --- SMTP ----------------------------------------------------------------------------------


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


def _envelope_recipients(message: EmailMessage) -> list[str]:
    """The RCPT TO list smtplib.send_message will use (To, Cc, Bcc)."""
    fields = [str(v) for h in ("To", "Cc", "Bcc") for v in (message.get_all(h) or [])]
    return [addr for _, addr in email.utils.getaddresses(fields) if addr]


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
        recipients = _envelope_recipients(message)
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


# --- URL -------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _file_dir(path: str, netloc: str, base_dir: Path) -> Path:
    """file://rel, file:rel → base_dir/rel; file:///abs → /abs."""
    raw = unquote(netloc + path)
    if not raw:
        raise ValueError("file: URL names no directory")
    target = Path(raw)
    return target if target.is_absolute() else Path(base_dir) / target


def public_mail_url(url: str) -> str:
    """The mail URL without user, password or options, fit for reports and logs."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("smtp", "smtps"):
        return url
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme.lower()}://{parts.hostname or '?'}{port}"


def transport_from_url(url: str, *, base_dir: Path) -> MailTransport:
    """Build a transport from LEADFLOW_MAIL_URL-style text; errors never echo the URL (it may hold a password).

    file://outbox, file:outbox → FileOutbox(base_dir/outbox); file:///abs/path → absolute.
    smtp://[user:pass@]host[:port][?starttls=true&timeout=30&local_hostname=x&connections=4] (port 25),
    smtps://… implicit TLS (port 465).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FileOutbox(_file_dir(parts.path, parts.netloc, base_dir))
    if scheme not in ("smtp", "smtps"):
        if not scheme:
            raise ValueError("mail URL has no scheme; use file:, smtp:// or smtps://")
        raise ValueError(f"unsupported mail URL scheme {scheme!r}; use file:, smtp:// or smtps://")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        # urllib's message can quote a fragment of a mistyped password; say nothing specific.
        raise ValueError(
            f"malformed {scheme}:// URL (bad host or port; percent-encode special characters in the password)"
        ) from None
    if not host:
        raise ValueError(f"{scheme}:// URL has no host")
    if "@" in parts.path + parts.query + parts.fragment:
        # A password with an unencoded / ? or # splits the URL in the wrong place.
        raise ValueError(f"malformed {scheme}:// URL (percent-encode special characters in the password)")
    security: Security = "ssl" if scheme == "smtps" else "none"
    timeout = 30.0
    local_hostname: str | None = None
    connections = 1
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "starttls":
            flag = value.strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ValueError("starttls must be true or false")
            if flag in _TRUE:
                if scheme == "smtps":
                    raise ValueError("smtps:// already uses TLS; starttls applies to smtp:// only")
                security = "starttls"
        elif key == "timeout":
            try:
                timeout = float(value)
            except ValueError:
                raise ValueError("timeout must be a number of seconds") from None
            if not timeout > 0:
                raise ValueError("timeout must be positive")
        elif key == "local_hostname":
            local_hostname = value or None
        elif key == "connections":
            if not value.strip().isdigit() or not 1 <= int(value) <= MAX_CONNECTIONS:
                raise ValueError(f"connections must be a whole number from 1 to {MAX_CONNECTIONS}")
            connections = int(value)
        else:
            # Neither key nor value is echoed: a mistyped URL can put password text here.
            raise ValueError("unknown mail URL option (known: starttls, timeout, local_hostname, connections)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SMTPTransport(
        host,
        port,
        security=security,
        username=username,
        password=password,
        timeout=timeout,
        local_hostname=local_hostname,
        connections=connections,
    )
