"""A real sending process that dies at a chosen moment, for the at-most-once tests.

    python -m tests.nurture.crashing_sender DB_URL SMTP_PORT NOW_ISO DIE_AT N

sends the due outbox rows through a real SMTPTransport and kills itself (no cleanup, no commit,
no QUIT) at the N-th message: `accepted` right after the server answered 250 to the message,
`sigkill` the same moment by SIGKILL, `before-mark` after the server accepted the recipient but
before the in-flight mark is written.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from leadflow.connectors.mail import Envelope, SMTPTransport
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import make_engine, session_scope
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import claim, send_claimed
from leadflow.nurture.render import TemplateRenderer

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
LINKS = LinkSigner(secret_key="crash-test-secret", public_base_url="https://mail.acme.example")


def die(how: str) -> None:
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(9)


class DyingTransport(SMTPTransport):
    def __init__(self, port: int, die_at: str, n: int) -> None:
        super().__init__("127.0.0.1", port, timeout=5.0, local_hostname="crash.test")
        self.die_at, self.n, self.count = die_at, n, 0

    def deliver(self, envelope: Envelope, *, before_data: Any = None) -> str:
        self.count += 1
        last = self.count == self.n

        def before() -> None:
            if last and self.die_at == "before-mark":
                die(self.die_at)
            if before_data is not None:
                before_data()

        reply = super().deliver(envelope, before_data=before)
        if last:
            die(self.die_at)  # the server has the message; the row is not marked sent
        return reply


def main(db_url: str, port: str, now_iso: str, die_at: str, n: str) -> None:
    engine = make_engine(db_url)
    now = datetime.fromisoformat(now_iso)
    config = load_config(EXAMPLE)
    with session_scope(engine) as session:
        ids = claim(session=session, now=now, limit=100)
    with DyingTransport(int(port), die_at, int(n)) as transport:
        send_claimed(
            engine=engine,
            ids=ids,
            config=config,
            renderer=TemplateRenderer(Path("/nonexistent")),
            transport=transport,
            links=LINKS,
            now=now,
        )
    sys.exit(0)  # reaching here means the process was not killed: the test fails on the exit code


if __name__ == "__main__":
    main(*sys.argv[1:])
