"""A threaded HTTP server on loopback with a request log and scripted faults, for vendor fakes.

A fault replaces the response to the n-th request (counted from when it was scheduled) whose
path starts with a prefix: a 429 with the vendor's headers midway, a fatal error on page 3, an
expired token. Everything else is answered by the vendor's routes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    prefix: str
    nth: int
    reply: Reply
    seen: int = 0
    fired: bool = False
    after: bool = False  # the vendor did the work, then the answer was lost (a timeout, a 503 from a proxy)
    method: str | None = None


class VendorError(Exception):
    """Raised by a route to answer with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class FakeVendor(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeVendor:
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def fail(self, prefix: str, *, nth: int, reply: Reply, after: bool = False, method: str | None = None) -> None:
        """Answer the `nth` next request under `prefix` (and `method`, if given) with `reply` instead, once.

        With `after`, the request is carried out first and only its answer is replaced: the
        vendor did the work but the caller never heard.
        """
        with self.lock:
            self.faults.append(Fault(prefix, nth, reply, after=after, method=method))

    def calls_to(self, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.path.startswith(prefix)]

    # --- for subclasses ---------------------------------------------------------------------------

    def authorize(self, call: Call) -> Reply | None:
        """None when the call's credentials are good, else the vendor's refusal."""
        return None

    def route(self, call: Call) -> Reply:
        raise NotImplementedError

    def extra_headers(self, call: Call) -> dict[str, str]:
        return {}

    # --- plumbing ---------------------------------------------------------------------------------

    def answer(self, call: Call) -> Reply:
        lost: Reply | None = None
        with self.lock:
            self.calls.append(call)
            for fault in self.faults:
                if fault.fired or not call.path.startswith(fault.prefix):
                    continue
                if fault.method is not None and fault.method != call.method:
                    continue
                fault.seen += 1
                if fault.seen == fault.nth:
                    fault.fired = True
                    if not fault.after:
                        return fault.reply
                    lost = fault.reply
        refused = self.authorize(call)
        if refused is not None:
            return refused
        try:
            with self.lock:
                reply = self.route(call)
        except VendorError as exc:
            reply = exc.reply
        return lost or reply


class _Handler(BaseHTTPRequestHandler):
    server: FakeVendor
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        content_type = self.headers.get("content-type", "")
        body: Any = None
        if raw and "json" in content_type:
            body = json.loads(raw)
        elif raw:
            body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        call = Call(
            method=method,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        reply = self.server.answer(call)
        payload = b"" if reply.status == 204 else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json;charset=UTF-8", **self.server.extra_headers(call), **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
