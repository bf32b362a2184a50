"""Real protocol peers for tests: an SMTP server (aiosmtpd) and a webhook receiver, on loopback.

The receiver verifies every request with `standardwebhooks`, the reference implementation,
so a test that passes proves our signatures are what a real peer accepts.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


REJECTED = "gone@example.com"
DEFERRED = "busy@example.com"


@dataclass
class Received:
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    accepted_at: datetime | None = None  # naive UTC, taken just before the server answers 250 to DATA


@dataclass
class RecordingHandler:
    """Records what arrives; refuses REJECTED with 550 and DEFERRED with 451; can hang up after DATA."""

    messages: list[Received] = field(default_factory=list)
    ehlos: int = 0
    drop_after_data: bool = False
    hung_up: threading.Event = field(default_factory=threading.Event)  # set once a dropped connection is closed

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address == REJECTED:
            return "550 5.1.1 No such user here"
        if address == DEFERRED:
            return "451 4.3.0 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        accepted = datetime.now(UTC).replace(tzinfo=None)
        self.messages.append(Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), parsed, accepted))
        if self.drop_after_data:
            self.drop_after_data = False
            # Close after the 250 has gone out, like a server's idle timeout between messages.
            asyncio.get_running_loop().call_later(0.05, self._hang_up, server.transport)
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def _hang_up(self, transport: asyncio.Transport) -> None:
        self.hung_up.clear()
        transport.close()
        # The socket closes on the loop's next turn (asyncio schedules it with call_soon); say so after it.
        asyncio.get_running_loop().call_soon(self.hung_up.set)

    def wait_for_hang_up(self, timeout: float = 5) -> None:
        """Block until the server has closed the connection it was told to drop."""
        assert self.hung_up.wait(timeout), "the SMTP server did not hang up"

    @property
    def connections(self) -> int:
        return len({r.peer for r in self.messages})


SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
SLOW = "slow"

Action = tuple[int, dict[str, str]] | str


@dataclass
class Recorded:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed payload when the signature verified, else the error


@dataclass
class ServerState:
    script: deque[Action] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            verified: Any = Webhook(SECRET).verify(body, headers)
        except WebhookVerificationError as exc:
            verified = exc
        state.requests.append(Recorded(headers, body, verified))
        action = state.script.popleft() if state.script else (200, {})
        if action == SLOW:
            state.release.wait(5)
            action = (200, {})
        assert isinstance(action, tuple)
        status, extra = action
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.state = ServerState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The slow handler writes to a client that already gave up; that is expected."""
