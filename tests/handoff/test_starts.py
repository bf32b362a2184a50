"""Where a handoff destination starts, on SQLite and PostgreSQL: one added later does not get the past SQLs."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.handoff.assignment import assign_new_sqls
from leadflow.handoff.outbox import queue_new_sqls_for
from leadflow.handoff.starts import Since, Start, destination_starts, left_out_message
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import DestinationStart, HandoffOutbox, Lead, Stage
from tests import factories as make
from tests.handoff.helpers import OWNERS, T0, add_sql, config


def _capped(limit: int) -> list[dict[str, object]]:
    return [{**o, "max_open_sqls": limit} if o["id"] in ("anna", "bram", "cleo") else o for o in OWNERS]


def run_queue(
    engine: Engine, cfg: WorkspaceConfig, destinations: dict[str, Since], now: datetime = T0
) -> tuple[dict[str, int], dict[str, Start]]:
    """What the handoff flow's first task does: owners, each destination's start, then handoff rows."""
    with session_scope(engine) as session:
        assign_new_sqls(session=session, config=cfg.handoff, now=now)
        starts = destination_starts(session, destinations.items(), now)
        queued = queue_new_sqls_for(
            session=session, config=cfg, destinations=list(destinations), now=now, starts=starts
        )
    return queued, starts


def handed(engine: Engine, destination: str) -> set[str]:
    with Session(engine) as session:
        rows = session.execute(select(HandoffOutbox.payload).where(HandoffOutbox.destination == destination))
        return {payload["lead"]["email"] for payload in rows.scalars()}


def test_a_destination_added_later_gets_only_what_nobody_was_handed_yet(engine: Engine) -> None:
    cfg = config(owners=_capped(1))
    with Session(engine) as session:  # anna already holds an SQL: the Benelux team has room for two
        session.add(make.lead("old@x.example", stage=Stage.sql, owner="anna"))
        session.commit()
    for n in range(3):
        add_sql(engine, f"l{n}@nl.example")  # l2 waits for an owner with room
    add_sql(engine, "us@x.example", country="US")  # a later SQL, for another team: handed off at once
    queued, starts = run_queue(engine, cfg, {"file": None})
    assert queued == {"file": 3} and handed(engine, "file") == {"l0@nl.example", "l1@nl.example", "us@x.example"}
    assert starts["file"] == Start(recorded=True)  # the workspace's first handoff: everything

    # Months later sales connect their CRM: it must not receive the three SQLs they already worked.
    add_sql(engine, "new@x.example", country="US")
    queued, starts = run_queue(engine, cfg, {"file": None, "crm": None})
    assert queued == {"file": 1, "crm": 1} and handed(engine, "crm") == {"new@x.example"}
    assert starts["crm"].recorded and starts["crm"].left_out == 3
    message = left_out_message("crm", starts["crm"])
    assert message is not None and "the 3 handed to other destinations before it was added" in message
    assert left_out_message("file", starts["file"]) is None  # known since the first run: nothing to say

    # The lead that waited for an owner was handed to nobody: when it gets one, both destinations get it.
    with Session(engine) as session:
        session.execute(update(Lead).where(Lead.email == "old@x.example").values(stage=Stage.customer.value))
        session.commit()
    queued, starts = run_queue(engine, cfg, {"file": None, "crm": None})
    assert queued == {"file": 1, "crm": 1} and handed(engine, "crm") == {"new@x.example", "l2@nl.example"}
    assert not starts["crm"].recorded  # the start is kept, not worked out again
    assert run_queue(engine, cfg, {"file": None, "crm": None})[0] == {"file": 0, "crm": 0}

    # `since` says otherwise: every SQL, or those made from a moment on.
    add_sql(engine, "later@x.example", country="US", at=T0 + timedelta(hours=5))
    destinations: dict[str, Since] = {"file": None, "crm": None, "archive": "all", "recent": T0 + timedelta(hours=1)}
    queued, _ = run_queue(engine, cfg, destinations)
    assert queued == {"file": 1, "crm": 1, "archive": 6, "recent": 1}
    assert handed(engine, "archive") == handed(engine, "file") and handed(engine, "recent") == {"later@x.example"}
    # Without `since` again, "recent" is not new now: it started when it first ran, after crm's SQLs.
    destinations["recent"] = None
    add_sql(engine, "last@x.example", country="US")
    queued, starts = run_queue(engine, cfg, destinations)
    assert queued == {"file": 1, "crm": 1, "archive": 1, "recent": 1} and not starts["recent"].recorded


def test_a_destination_with_handoffs_of_its_own_keeps_getting_what_it_lacks(engine: Engine) -> None:
    """A workspace from before starts were recorded: a destination with handoffs of its own is not new."""
    cfg = config()
    add_sql(engine, "a@x.example")
    run_queue(engine, cfg, {"file": None, "hook": None})
    with Session(engine) as session:  # as a workspace upgraded from an older leadflow has them: no starts
        session.execute(DestinationStart.__table__.delete())
        session.execute(HandoffOutbox.__table__.delete().where(HandoffOutbox.destination == "hook"))
        session.commit()
    add_sql(engine, "b@x.example")
    # "hook" lost its row for a@ (say, deleted by hand): it has none, so it is new and starts after a@.
    # "file" has its own rows: it gets what it lacks.
    queued, starts = run_queue(engine, cfg, {"file": None, "hook": None})
    assert queued == {"file": 1, "hook": 1} and handed(engine, "hook") == {"b@x.example"}
    assert starts["file"].after is None and starts["hook"].after is not None and starts["hook"].left_out == 1
