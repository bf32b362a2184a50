"""LEADFLOW_MAIL_URL: which transport, read into typed settings and validated once, when it is loaded.

file://outbox, file:outbox → a FileOutbox under the workspace; file:///abs/path → absolute.
smtp://[user:pass@]host[:port][?starttls=true&timeout=30&local_hostname=x&connections=4] (port 25),
smtps://… implicit TLS (port 465).

The URL may hold a password, so no error repeats it, nor pydantic's own messages (they quote the
input): each problem is reported by the option's name and what it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from leadflow.connectors.mail.envelope import MailTransport
from leadflow.connectors.mail.file_outbox import FileOutbox
from leadflow.connectors.mail.smtp import Security, SMTPTransport

__all__ = ["MAX_CONNECTIONS", "SmtpSettings", "public_mail_url", "transport_from_url"]

MAX_CONNECTIONS = 16
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_OPTIONS = ("starttls", "timeout", "local_hostname", "connections")


def _flag(value: object) -> object:
    """true/false as the URL writes them (1/0, yes/no, on/off too); anything else is left to fail."""
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else value


def _whole(value: object) -> object:
    """Digits only: "4" but not " 4.0" or "-1"."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class SmtpSettings(BaseModel):
    """An smtp:// or smtps:// URL, read: where to connect, as whom, and the options after `?`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["smtp", "smtps"]
    host: str = Field(min_length=1)
    port: int | None = None
    username: str | None = None
    password: SecretStr | None = None
    starttls: Annotated[bool, BeforeValidator(_flag)] = Field(False, strict=True)
    timeout: float = Field(30.0, gt=0)
    local_hostname: str | None = None
    connections: Annotated[int, BeforeValidator(_whole)] = Field(1, ge=1, le=MAX_CONNECTIONS, strict=True)

    @model_validator(mode="after")
    def _starttls_needs_plain_smtp(self) -> SmtpSettings:
        if self.starttls and self.scheme == "smtps":
            raise ValueError("smtps:// already uses TLS; starttls applies to smtp:// only")
        return self

    @property
    def security(self) -> Security:
        return "ssl" if self.scheme == "smtps" else "starttls" if self.starttls else "none"

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Read an smtp(s):// URL; a ValueError names the part or option that is wrong, never its value."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
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
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        if set(options) - set(_OPTIONS):
            # Neither key nor value is echoed: a mistyped URL can put password text here.
            raise ValueError(f"unknown mail URL option (known: {', '.join(_OPTIONS)})")
        if options.get("local_hostname") == "":
            del options["local_hostname"]
        try:
            return cls.model_validate(
                {
                    "scheme": scheme,
                    "host": host,
                    "port": port,
                    "username": unquote(parts.username) if parts.username else None,
                    "password": unquote(parts.password) if parts.password is not None else None,
                    **options,
                }
            )
        except ValidationError as exc:
            raise ValueError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    """The first problem, by option name, without the input pydantic would quote."""
    error = exc.errors()[0]
    option = str(error["loc"][0]) if error["loc"] else ""
    if option == "starttls":
        return "starttls must be true or false"
    if option == "timeout":
        return "timeout must be positive" if error["type"] == "greater_than" else "timeout must be a number of seconds"
    if option == "connections":
        return f"connections must be a whole number from 1 to {MAX_CONNECTIONS}"
    if not option and isinstance(error.get("ctx", {}).get("error"), ValueError):
        return str(error["ctx"]["error"])  # the model's own check, worded above without any value
    return f"the mail URL's {option or 'settings'} is not valid"


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
    """Build a transport from LEADFLOW_MAIL_URL-style text (see the module's docstring)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FileOutbox(_file_dir(parts.path, parts.netloc, base_dir))
    if scheme not in ("smtp", "smtps"):
        if not scheme:
            raise ValueError("mail URL has no scheme; use file:, smtp:// or smtps://")
        raise ValueError(f"unsupported mail URL scheme {scheme!r}; use file:, smtp:// or smtps://")
    smtp = SmtpSettings.from_url(url)
    return SMTPTransport(
        smtp.host,
        smtp.port,
        security=smtp.security,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password is not None else None,
        timeout=smtp.timeout,
        local_hostname=smtp.local_hostname,
        connections=smtp.connections,
    )
