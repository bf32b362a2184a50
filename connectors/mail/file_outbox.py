"""A file outbox: each message written to <directory>/<Message-ID>.eml, for development."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Self

from leadflow.connectors.errors import TransientMailError
from leadflow.connectors.keyed_files import atomic_write, file_stem
from leadflow.connectors.mail.envelope import BeforeData, Envelope

__all__ = ["FileOutbox"]


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
