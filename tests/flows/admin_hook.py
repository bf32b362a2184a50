"""An admin's notification webhook on loopback, and a wait until freshly created automations act.

Prefect's triggers service loads new automations on its own clock: an event emitted before it has
done so is not acted on. Instead of sleeping and hoping, `wait_until_automations_act` emits a
dead-letter event for a made-up destination until the shipped dead-letter automation notifies this
hook about it. Those probe notifications are kept apart from the ones a test asserts on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBE = "probe:automations-loaded"


@dataclass
class AdminHook:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)  # every notification but the probes'
    probes: list[dict[str, Any]] = field(default_factory=list)

    def wait_until_automations_act(self, timeout: float = 30) -> None:
        """Emit a probe dead-letter event (again, each second) until its notification arrives."""
        from prefect.events import emit_event

        deadline = time.monotonic() + timeout
        while not self.probes:
            assert time.monotonic() < deadline, f"the automations did not act within {timeout:.0f} s"
            emit_event(
                event="leadflow.handoff.dead-lettered",
                resource={"prefect.resource.id": f"leadflow.handoff.{PROBE}", "prefect.resource.name": PROBE},
                payload={"dead": 1, "newest": []},
            )
            again = time.monotonic() + 1
            while not self.probes and time.monotonic() < again:
                time.sleep(0.05)

    def install_automations(self, block: str) -> str:
        """Save this hook as a custom-webhook block and create leadflow's automations on it; the CLI's output."""
        from prefect.blocks.notifications import CustomWebhookNotificationBlock
        from typer.testing import CliRunner

        from leadflow.cli.main import app

        CustomWebhookNotificationBlock(
            name="admin hook",
            url=self.url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            allow_private_urls=True,
        ).save(block, overwrite=True)
        result = CliRunner().invoke(app, ["ops", "automations", "--block", block, "--block-type", "custom-webhook"])
        assert result.exit_code == 0, result.output
        return result.output

    def wait_for_notification(self, timeout: float = 30) -> None:
        """Until a notification other than a probe's has arrived (the caller asserts on it)."""
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.05)


@contextmanager
def admin_hook() -> Iterator[AdminHook]:
    """A webhook that records the JSON Prefect's custom-webhook notification block posts to it."""
    hook = AdminHook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posted = json.loads(self.rfile.read(int(self.headers["content-length"])))
            (hook.probes if PROBE in posted.get("subject", "") else hook.received).append(posted)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{httpd.server_address[1]}/notify"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        httpd.shutdown()
        httpd.server_close()
