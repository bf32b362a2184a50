"""LEADFLOW_MAIL_URL read into typed settings: every wrong option is named, no value is repeated."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from leadflow.connectors.mail import SmtpSettings, SMTPTransport, transport_from_url


def test_the_options_become_typed_settings() -> None:
    smtp = SmtpSettings.from_url(
        "smtp://ann:s%40cret@mail.example.com:2525?starttls=yes&timeout=12.5&local_hostname=box&connections=4"
    )
    assert (smtp.host, smtp.port, smtp.username, smtp.security) == ("mail.example.com", 2525, "ann", "starttls")
    assert (smtp.timeout, smtp.local_hostname, smtp.connections) == (12.5, "box", 4)
    assert smtp.password is not None and smtp.password.get_secret_value() == "s@cret"
    assert "s@cret" not in repr(smtp)
    transport = transport_from_url("smtp://mail.example.com?connections=3&local_hostname=", base_dir=Path("."))
    assert isinstance(transport, SMTPTransport) and len(transport.copies()) == 3 and transport.local_hostname is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("starttls=maybe-hunter2", "starttls must be true or false"),
        ("timeout=hunter2", "timeout must be a number of seconds"),
        ("timeout=0", "timeout must be positive"),
        ("timeout=nan", "timeout must be positive"),
        ("connections=17", "connections must be a whole number from 1 to 16"),
        ("connections=2.5", "connections must be a whole number from 1 to 16"),
        ("hunter2=1", r"unknown mail URL option \(known: starttls, timeout, local_hostname, connections\)"),
    ],
)
def test_a_wrong_option_is_named_and_its_value_never_repeated(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$") as info:
        transport_from_url(f"smtp://user:pw@mail.example.com?{query}", base_dir=Path("."))
    assert "hunter2" not in "".join(traceback.format_exception(info.value))


def test_starttls_on_implicit_tls_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^smtps:// already uses TLS; starttls applies to smtp:// only$"):
        transport_from_url("smtps://mail.example.com?starttls=true", base_dir=Path("."))
