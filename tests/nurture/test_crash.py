"""At most one email per outbox row, even when the sending process is killed mid-batch.

A real child process sends through a real SMTPTransport to aiosmtpd on loopback and dies (os._exit
or SIGKILL, no cleanup) at a chosen moment; a later run in this process finishes the batch. The
server must end up with exactly one copy of every email, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.connectors.mail import SMTPTransport
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, OutboxStatus, utcnow
from leadflow.nurture.outbox import LEASE, claim, send_claimed, settle_in_flight
from leadflow.nurture.render import TemplateRenderer
from tests.nurture.crashing_sender import EXAMPLE, LINKS
from tests.nurture.test_outbox import _queue
from tests.peers import RecordingHandler

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = ("a@example.com", "b@example.com", "c@example.com")


def _run_dying_sender(db_url: str, port: int, now: object, die_at: str, n: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-m", "tests.nurture.crashing_sender", db_url, str(port), now.isoformat(), die_at, str(n)],  # type: ignore[attr-defined]
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode in (9, -9), child.stderr.decode()[-2000:]
    return child.returncode


def _statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.execute(select(EmailOutbox.idempotency_key, EmailOutbox.lead_id, EmailOutbox.status)).all()
    return {str(lead_id): status for _, lead_id, status in rows}


def _finish_the_batch(engine: Engine, port: int, at: object) -> tuple[int, int]:
    """What the next nurture run does: settle rows left in flight, claim what is due, send it."""
    with session_scope(engine) as session:
        unconfirmed = settle_in_flight(session=session, now=at)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        ids = claim(session=session, now=at, limit=100)  # type: ignore[arg-type]
    with SMTPTransport("127.0.0.1", port, timeout=5.0) as transport:
        report = send_claimed(
            engine=engine,
            ids=ids,
            config=load_config(EXAMPLE),
            renderer=TemplateRenderer(Path("/nonexistent")),
            transport=transport,
            links=LINKS,
            now=at,  # type: ignore[arg-type]
        )
    return unconfirmed, report.sent


def _copies(mailbox: RecordingHandler) -> Counter[str]:
    return Counter(r for m in mailbox.messages for r in m.rcpt_tos)


@pytest.mark.parametrize("how", ["accepted", "sigkill"])
def test_killed_right_after_the_server_accepted_then_rerun_delivers_exactly_one_copy(
    engine: Engine, db_url: str, smtp_server: tuple[RecordingHandler, int], how: str
) -> None:
    mailbox, port = smtp_server
    now = utcnow()
    ids = _queue(engine, load_config(EXAMPLE), now, *ADDRESSES)

    code = _run_dying_sender(db_url, port, now, how, n=2)
    assert code == (-9 if how == "sigkill" else 9)
    assert _copies(mailbox) == Counter(ADDRESSES[:2])  # the server took a and b, then the sender died
    status = _statuses(engine)
    assert status[str(ids["a@example.com"])] == OutboxStatus.sent
    assert status[str(ids["b@example.com"])] == OutboxStatus.in_flight  # accepted, never marked
    assert status[str(ids["c@example.com"])] == OutboxStatus.sending  # claimed, nothing handed over

    # While the lease holds, a run leaves them alone.
    assert _finish_the_batch(engine, port, now + timedelta(minutes=5)) == (0, 0)
    # After it: b is settled as unconfirmed (never re-sent), c is sent, none lost.
    assert _finish_the_batch(engine, port, now + LEASE + timedelta(seconds=1)) == (1, 1)
    assert _copies(mailbox) == Counter(ADDRESSES)  # exactly one copy of each
    status = _statuses(engine)
    assert status[str(ids["b@example.com"])] == OutboxStatus.unconfirmed
    assert status[str(ids["c@example.com"])] == OutboxStatus.sent
    # And nothing is ever sent again.
    assert _finish_the_batch(engine, port, now + timedelta(days=30)) == (0, 0)
    assert _copies(mailbox) == Counter(ADDRESSES)
    ids_seen = [m.message["Message-ID"] for m in mailbox.messages]
    assert len(set(ids_seen)) == 3


def test_killed_before_the_in_flight_mark_the_email_is_sent_once_after_the_lease(
    engine: Engine, db_url: str, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    now = utcnow()
    ids = _queue(engine, load_config(EXAMPLE), now, *ADDRESSES)

    _run_dying_sender(db_url, port, now, "before-mark", n=2)
    # The server accepted b as a recipient but never got a message (no DATA): it holds only a.
    assert _copies(mailbox) == Counter(ADDRESSES[:1])
    assert _statuses(engine)[str(ids["b@example.com"])] == OutboxStatus.sending

    # a's confirmation waits for the next commit (b's in-flight mark), which never came: a is settled
    # as unconfirmed (delivered, never re-sent); b and c are sent once each.
    assert _finish_the_batch(engine, port, now + LEASE + timedelta(seconds=1)) == (1, 2)
    assert _copies(mailbox) == Counter(ADDRESSES)
    status = _statuses(engine)
    assert status[str(ids["a@example.com"])] == OutboxStatus.unconfirmed
    assert status[str(ids["b@example.com"])] == status[str(ids["c@example.com"])] == OutboxStatus.sent
