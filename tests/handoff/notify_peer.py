"""A loopback HTTP server that records what apprise's json:// and form:// notifications post."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text


@dataclass
class Inbox:
    posts: list[Posted] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)  # statuses to answer, then 200


class _Handler(BaseHTTPRequestHandler):
    server: NotifyServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", "0"))).decode("utf-8")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        inbox = self.server.inbox
        inbox.posts.append(Posted(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(inbox.script.popleft() if inbox.script else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class NotifyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.inbox = Inbox()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> NotifyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
