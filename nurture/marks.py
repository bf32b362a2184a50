"""The crash-safe marks on a claimed outbox row: each write fenced by the claim, each committed when it must be.

Every update names the row and the claim's attempt number (a fencing token), so a sender whose
lease another sender took over changes nothing. The in-flight mark is the one that makes a send
at-most-once: it is committed right before the message goes out (see nurture/outbox.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Update, bindparam, update
from sqlmodel import col

from leadflow.connectors.mail import Envelope
from leadflow.leads.db.models import EmailOutbox, OutboxStatus
from leadflow.nurture.due import Due


class LeaseLost(RuntimeError):
    """Another sender re-claimed the row after this one's lease ran out; it is theirs to send."""


def _row(*, status: bool = False) -> Update:
    """UPDATE email_outbox … WHERE this claim (row id and attempt number: a fencing token)."""
    where: list[ColumnElement[bool]] = [
        col(EmailOutbox.id) == bindparam("rid"),
        col(EmailOutbox.attempts) == bindparam("att"),
    ]
    if status:
        where.append(col(EmailOutbox.status) == OutboxStatus.sending)
    return update(EmailOutbox).where(*where).execution_options(synchronize_session=False)


class Marks:
    """The batch's row updates, built once, buffered and written together.

    Outcomes that need no durability at once (a skip, a deferral, a confirmed send) wait for the
    next commit: a crash before it leaves such a row `sending` (judged again after the lease) or
    `in_flight` (settled as unconfirmed, never re-sent), both safe. The in-flight mark itself, and
    any failure after it, is committed before anything else happens.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.buffered: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.statements = {
            "in_flight": _row(status=True).values(
                status=OutboxStatus.in_flight.value, sent_at=bindparam("at"), message_id=bindparam("mid")
            ),
            "sent": _row().values(
                status=OutboxStatus.sent.value,
                sent_at=bindparam("at"),
                message_id=bindparam("mid"),
                provider_id=bindparam("pid"),
                last_error=None,
            ),
            "finish": _row().values(status=bindparam("st"), last_error=bindparam("err")),
            "unconfirmed": _row().values(
                status=OutboxStatus.unconfirmed.value,
                sent_at=bindparam("at"),
                message_id=bindparam("mid"),
                last_error=bindparam("err"),
            ),
            "defer": _row().values(
                status=OutboxStatus.pending.value,
                attempts=bindparam("att") - 1,  # a deferral is not a delivery attempt
                next_attempt_at=bindparam("until"),
                last_error=bindparam("err"),
            ),
            "retry": _row().values(
                status=OutboxStatus.pending.value,
                next_attempt_at=bindparam("until"),
                last_error=bindparam("err"),
                sent_at=None,
                message_id=None,
            ),
        }

    def later(self, kind: str, due: Due, **values: Any) -> None:
        self.buffered[kind].append({"rid": due.row_id, "att": due.attempts, **values})

    def now(self, kind: str, due: Due, **values: Any) -> None:
        self.later(kind, due, **values)
        self.flush()

    def _write_buffered(self) -> None:
        for kind, rows in self.buffered.items():
            if rows:
                self.connection.execute(self.statements[kind], rows)
        self.buffered.clear()

    def flush(self) -> None:
        self._write_buffered()
        self.connection.commit()

    def in_flight(self, due: Due, envelope: Envelope, now: datetime) -> None:
        """Commit the in-flight mark (and what waited) by compare-and-set; LeaseLost if the claim is gone."""
        self._write_buffered()
        params = {"rid": due.row_id, "att": due.attempts, "at": now, "mid": envelope.message_id}
        result = self.connection.execute(self.statements["in_flight"], params)
        self.connection.commit()
        if result.rowcount != 1:
            raise LeaseLost(due.key)
