"""Mail transports against a real aiosmtpd server on loopback and a real directory."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import ssl
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from leadflow.connectors.errors import MailError, PermanentMailError, TransientMailError, UnconfirmedMailError
from leadflow.connectors.mail import (
    Envelope,
    FileOutbox,
    SMTPTransport,
    envelope_of,
    public_mail_url,
    transport_from_url,
)
from tests.peers import DEFERRED, REJECTED, RecordingHandler, free_port

PASSWORD = "s3cr3t-Pa55!"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    expected = (b"mailer", PASSWORD.encode())
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == expected
    return AuthResult(success=ok, handled=False)


Server = tuple[RecordingHandler, int, Controller]


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,
        ready_timeout=5,
    )
    controller.start()
    try:
        yield handler, port, controller
    finally:
        if controller._thread is not None:
            controller.stop()


def _message(to: str, subject: str = "Hello", message_id: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Leadflow <news@leadflow.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="leadflow.test")
    msg.set_content(f"Plain body for {subject} — ünïcödé\n")
    return msg


def _text(wire: str) -> str:
    """Bodies travel with CRLF line ends; compare them as the sender wrote them."""
    return wire.replace("\r\n", "\n")


def _transport(port: int, **kwargs: Any) -> SMTPTransport:
    return SMTPTransport("127.0.0.1", port, timeout=2.0, local_hostname="leadflow.test", **kwargs)


def test_several_messages_share_one_connection(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    sent = [_message(f"lead{i}@example.com", subject=f"Issue {i}") for i in range(5)]
    with _transport(port) as transport:
        ids = [transport.send(m) for m in sent]
    assert ids == [f"smtp:2.0.0 Ok: queued as Q{i}" for i in range(1, 6)]
    assert handler.connections == 1
    assert handler.ehlos == 1
    for original, got in zip(sent, handler.messages, strict=True):
        assert got.mail_from == "news@leadflow.test"
        assert got.rcpt_tos == [original["To"]]
        assert got.message["Subject"] == original["Subject"]
        assert got.message["Message-ID"] == original["Message-ID"]
        assert _text(got.message.get_content()) == original.get_content()


def test_multipart_alternative_survives(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    msg = _message("lead@example.com")
    msg.add_alternative("<html><body><p>Hi <b>Zoë</b> — click</p></body></html>", subtype="html")
    with _transport(port) as transport:
        transport.send(msg)
    got = handler.messages[0].message
    assert got.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in got.iter_parts()}
    assert _text(parts["text/plain"]) == msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<b>Zoë</b>" in parts["text/html"]


def test_550_is_permanent_and_the_connection_keeps_working(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    with _transport(port) as transport:
        transport.send(_message("first@example.com"))
        with pytest.raises(PermanentMailError) as info:
            transport.send(_message(REJECTED))
        transport.send(_message("after@example.com"))
    assert info.value.recipient == REJECTED
    assert info.value.code == 550
    assert [m.rcpt_tos for m in handler.messages] == [["first@example.com"], ["after@example.com"]]
    assert handler.connections == 1


def test_451_is_transient(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    with _transport(port) as transport:
        with pytest.raises(TransientMailError) as info:
            transport.send(_message(DEFERRED))
        assert not isinstance(info.value, PermanentMailError)
        assert info.value.code == 451
        transport.send(_message("ok@example.com"))
    assert len(handler.messages) == 1


def test_reconnects_once_when_the_server_dropped_an_idle_connection(
    smtp_server: Server,
) -> None:
    handler, port, _ = smtp_server
    handler.drop_after_data = True
    with _transport(port) as transport:
        transport.send(_message("one@example.com"))
        handler.wait_for_hang_up()  # the server hangs up meanwhile
        transport.send(_message("two@example.com"))
        transport.send(_message("three@example.com"))
    assert [m.rcpt_tos[0] for m in handler.messages] == ["one@example.com", "two@example.com", "three@example.com"]
    assert handler.connections == 2


def test_deliver_reconnects_once_before_the_hook_when_the_idle_connection_was_dropped(
    smtp_server: Server,
) -> None:
    handler, port, _ = smtp_server
    handler.drop_after_data = True
    marks: list[str] = []
    with _transport(port) as transport:
        transport.deliver(_envelope("one@example.com"), before_data=lambda: marks.append("one"))
        handler.wait_for_hang_up()  # the server hangs up meanwhile
        transport.deliver(_envelope("two@example.com", 2), before_data=lambda: marks.append("two"))
    assert [m.rcpt_tos[0] for m in handler.messages] == ["one@example.com", "two@example.com"]
    assert marks == ["one", "two"] and handler.connections == 2  # the hook ran once per message


def test_deliver_to_a_server_gone_mid_batch_is_transient_and_marks_nothing(smtp_server: Server) -> None:
    handler, port, controller = smtp_server
    handler.drop_after_data = True
    marks: list[str] = []
    with _transport(port) as transport:
        transport.deliver(_envelope("one@example.com"))
        handler.wait_for_hang_up()
        controller.stop()
        with pytest.raises(TransientMailError):
            transport.deliver(_envelope("two@example.com", 2), before_data=lambda: marks.append("two"))
    assert marks == []  # nothing was handed over, so the email may simply be sent again later


def test_stopped_server_is_transient(smtp_server: Server) -> None:
    _, port, controller = smtp_server
    controller.stop()
    with _transport(port) as transport, pytest.raises(TransientMailError) as info:
        transport.send(_message("lead@example.com"))
    assert "127.0.0.1" in str(info.value)


def test_server_gone_mid_batch_is_transient(smtp_server: Server) -> None:
    handler, port, controller = smtp_server
    handler.drop_after_data = True
    with _transport(port) as transport:
        transport.send(_message("one@example.com"))
        handler.wait_for_hang_up()
        controller.stop()  # dropped connection, and the reconnect is refused
        with pytest.raises(TransientMailError):
            transport.send(_message("two@example.com"))


def test_login_and_bad_password_never_echoed(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    with _transport(port, username="mailer", password=PASSWORD) as transport:
        assert PASSWORD not in repr(transport)
        transport.send(_message("lead@example.com"))
        transport.deliver(envelope_of(_message("other@example.com")))  # the same authenticated connection
    assert len(handler.messages) == 2 and handler.connections == 1

    wrong = "wr0ng-Secret"
    with _transport(port, username="mailer", password=wrong) as transport:
        with pytest.raises(MailError) as info:
            transport.send(_message("lead@example.com"))
    assert not isinstance(info.value, (TransientMailError, PermanentMailError))
    assert info.value.code == 535
    assert wrong not in str(info.value) and wrong not in repr(info.value)


def test_file_outbox_writes_parseable_eml_once_per_message_id(tmp_path: Path) -> None:
    outbox_dir = tmp_path / "outbox"
    msg = _message("lead@example.com", message_id="<abc.123@leadflow.test>")
    msg.add_alternative("<p>Hi</p>", subtype="html")
    with FileOutbox(outbox_dir) as outbox:
        first = outbox.send(msg)
        del msg["Subject"]
        msg["Subject"] = "Hello again"
        second = outbox.send(msg)
        other = outbox.send(_message("b@example.com", message_id="<x/../y@z>"))
    assert first == second
    files = sorted(p.name for p in outbox_dir.iterdir())
    assert files == sorted([Path(first).name, Path(other).name])
    assert Path(first).name == "abc.123@leadflow.test.eml"
    assert Path(other).parent == outbox_dir and "/" not in Path(other).name
    parsed = email.message_from_bytes(Path(first).read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Hello again"
    assert parsed["Message-ID"] == "<abc.123@leadflow.test>"
    assert parsed.get_content_type() == "multipart/alternative"


def test_file_outbox_requires_message_id(tmp_path: Path) -> None:
    msg = _message("lead@example.com")
    del msg["Message-ID"]
    with FileOutbox(tmp_path) as outbox, pytest.raises(ValueError, match="Message-ID"):
        outbox.send(msg)


def test_transport_from_url_file(tmp_path: Path) -> None:
    for url in ("file://outbox", "file:outbox"):
        transport = transport_from_url(url, base_dir=tmp_path)
        assert isinstance(transport, FileOutbox)
        assert transport.directory == tmp_path / "outbox"
    absolute = transport_from_url(f"file://{tmp_path}/abs/box", base_dir=Path("/elsewhere"))
    assert isinstance(absolute, FileOutbox)
    assert absolute.directory == tmp_path / "abs" / "box"


def test_transport_from_url_smtp() -> None:
    plain = transport_from_url("smtp://mail.example.com", base_dir=Path("."))
    assert isinstance(plain, SMTPTransport)
    assert (plain.host, plain.port, plain.security, plain.username) == ("mail.example.com", 25, "none", None)

    tls = transport_from_url("smtp://u%40x.com:p%2Fss@mail.example.com:587?starttls=true", base_dir=Path("."))
    assert isinstance(tls, SMTPTransport)
    assert (tls.port, tls.security, tls.username) == (587, "starttls", "u@x.com")
    assert "p/ss" not in repr(tls)

    implicit = transport_from_url("smtps://u:pw@mail.example.com", base_dir=Path("."))
    assert isinstance(implicit, SMTPTransport)
    assert (implicit.port, implicit.security) == (465, "ssl")


def test_transport_from_url_errors_never_echo_the_password() -> None:
    with pytest.raises(ValueError, match="'ftp'"):
        transport_from_url("ftp://u:hunter2@host", base_dir=Path("."))
    for bad in (
        "smtp://user:hunter2/x@host:25",  # unencoded slash in the password
        "smtp://user:123?hunter2@host",  # unencoded question mark
        "smtp://user:hunter2@host:notaport",
        "smtp://user:pw@host?hunter2=1",
        "smtps://user:pw@host?starttls=true&x=hunter2",
    ):
        with pytest.raises(ValueError) as info:
            transport_from_url(bad, base_dir=Path("."))
        assert "hunter2" not in "".join(traceback.format_exception(info.value)), bad


# --- TLS: STARTTLS and implicit TLS against a self-signed certificate ------------------------


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only that server's self-signed certificate)."""
    pytest.importorskip("cryptography")  # a dependency of prefect, so normally present
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


def _tls_controller(handler: RecordingHandler, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5, **kwargs)
    controller.start()
    return controller, port


def test_starttls(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    handler = RecordingHandler()
    controller, port = _tls_controller(handler, tls_context=server_ctx, require_starttls=True)
    try:
        with _transport(port, security="starttls", ssl_context=client_ctx) as transport:
            transport.send(_message("a@example.com"))
            transport.send(_message("b@example.com"))
            transport.deliver(envelope_of(_message("c@example.com")), before_data=lambda: None)
        assert len(handler.messages) == 3 and handler.connections == 1
        # The system trust store does not know our certificate: a configuration error, not a retry.
        with _transport(port, security="starttls") as transport, pytest.raises(MailError) as info:
            transport.send(_message("c@example.com"))
        assert not isinstance(info.value, (TransientMailError, PermanentMailError))
        assert "certificate" in str(info.value)
    finally:
        controller.stop()


def test_implicit_tls(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    handler = RecordingHandler()
    controller, port = _tls_controller(handler, ssl_context=server_ctx)
    try:
        with _transport(port, security="ssl", ssl_context=client_ctx) as transport:
            assert transport.send(_message("a@example.com")).startswith("smtp:2.0.0 Ok")
            assert transport.deliver(envelope_of(_message("b@example.com"))).startswith("smtp:2.0.0 Ok")
        assert [m.rcpt_tos for m in handler.messages] == [["a@example.com"], ["b@example.com"]]
    finally:
        controller.stop()


# --- deliver: the in-flight hook and the ambiguous end of DATA ------------------------------------


def _envelope(to: str, n: int = 1) -> Envelope:
    msg = _message(to, subject=f"Envelope {n}")
    return envelope_of(msg)


def test_deliver_calls_before_data_after_the_recipient_is_accepted(smtp_server: Server) -> None:
    handler, port, _ = smtp_server
    seen: list[int] = []
    with _transport(port) as transport:
        reply = transport.deliver(_envelope("one@example.com"), before_data=lambda: seen.append(len(handler.messages)))
        assert reply.startswith("smtp:2.0.0 Ok")
        # A refused recipient: the hook never runs (nothing may be marked in flight).
        with pytest.raises(PermanentMailError):
            transport.deliver(_envelope(REJECTED), before_data=lambda: seen.append(-1))
        with pytest.raises(TransientMailError):
            transport.deliver(_envelope(DEFERRED), before_data=lambda: seen.append(-1))
    assert seen == [0]  # called once, before the server had the message
    assert [m.rcpt_tos for m in handler.messages] == [["one@example.com"]]


def test_a_failing_hook_sends_nothing_and_the_connection_goes_on(smtp_server: Server) -> None:
    handler, port, _ = smtp_server

    def refuse() -> None:
        raise RuntimeError("row was taken over")

    with _transport(port) as transport:
        with pytest.raises(RuntimeError):
            transport.deliver(_envelope("first@example.com"), before_data=refuse)
        transport.deliver(_envelope("second@example.com", 2))
    assert [m.rcpt_tos for m in handler.messages] == [["second@example.com"]]
    assert handler.connections == 1


@dataclass
class HangUpAfterMessage(RecordingHandler):
    """Takes the whole message, then drops the connection instead of answering 250."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await super().handle_DATA(server, session, envelope)
        server.transport.close()
        return "250 2.0.0 Ok"


def test_no_answer_after_the_message_is_unconfirmed_not_transient() -> None:
    handler = HangUpAfterMessage()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        with _transport(port) as transport:
            with pytest.raises(UnconfirmedMailError) as info:
                transport.deliver(_envelope("maybe@example.com"))
    finally:
        controller.stop()
    assert not isinstance(info.value, TransientMailError)  # retrying could deliver it twice
    assert "maybe@example.com" in str(info.value) and "may have been delivered" in str(info.value)
    assert len(handler.messages) == 1  # and indeed the server had it


def test_mail_url_connections_option() -> None:
    transport = transport_from_url("smtp://mail.example.com?connections=4", base_dir=Path("."))
    assert isinstance(transport, SMTPTransport)
    copies = transport.copies()
    assert len(copies) == 4 and copies[0] is transport and len({id(c) for c in copies}) == 4
    assert {(c.host, c.port) for c in copies} == {("mail.example.com", 25)}
    for bad in ("0", "17", "four"):
        with pytest.raises(ValueError, match="connections must be"):
            transport_from_url(f"smtp://mail.example.com?connections={bad}", base_dir=Path("."))
    assert public_mail_url("smtp://mailer:s3cret@mail.example.com:587?starttls=true") == "smtp://mail.example.com:587"


def test_file_outbox_deliver_writes_one_file_per_message_id_without_an_in_flight_mark(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    envelope = _envelope("lead@example.com")
    calls: list[str] = []
    with outbox:
        first = outbox.deliver(envelope, before_data=lambda: calls.append("mark"))
        again = outbox.deliver(envelope, before_data=lambda: calls.append("mark"))  # a re-send after a crash
    assert first == again and list((tmp_path / "outbox").iterdir()) == [Path(first)]
    assert calls == []  # rewriting the same file is harmless, so no in-flight mark is needed
    written = email.message_from_bytes(Path(first).read_bytes(), policy=email.policy.default)
    assert written["To"] == "lead@example.com" and written["Message-ID"] == envelope.message_id
    assert b"\r\n" not in Path(first).read_bytes()  # local line ends, as mail programs expect in .eml
