"""One handoff run's steps around delivering: owners and queueing, what is due, destinations switched off.

Flows call these in order (flows/handoff.py); each opens its own transaction on `engine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from leadflow.handoff.assignment import AssignReport, assign_new_sqls
from leadflow.handoff.destinations import disable, disabled_reason
from leadflow.handoff.outbox import queue_new_sqls_for
from leadflow.handoff.sla import SlaReport, check_sla
from leadflow.handoff.starts import Since, destination_starts, left_out_message
from leadflow.leads.config.handoff import HandoffDestination
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import HandoffOutbox
from leadflow.leads.work.outbox import count_due


@dataclass
class Queued:
    queued: dict[str, int]  # per destination
    assigned: AssignReport
    started: dict[str, str]  # destinations that start this run without the SQLs handed off before them


def destination_address(spec: HandoffDestination) -> str:
    """What identifies where a destination delivers; a change re-enables one switched off by a 410."""
    return str(getattr(spec, "url", None) or getattr(spec, "base_url", None) or getattr(spec, "path", spec.name))


def assign_and_queue(
    engine: Engine, config: WorkspaceConfig, destinations: Sequence[tuple[str, Since]], now: datetime
) -> Queued:
    """Owners first, in the same transaction, so each destination's payload carries its owner.
    `destinations`: (name, since) of each."""
    with session_scope(engine) as session:
        assigned = assign_new_sqls(session=session, config=config.handoff, now=now)
        starts = destination_starts(session, destinations, now)
        names = [name for name, _ in destinations]
        queued = queue_new_sqls_for(session=session, config=config, destinations=names, now=now, starts=starts)
    started = {name: message for name, start in starts.items() if (message := left_out_message(name, start))}
    return Queued(queued=queued, assigned=assigned, started=started)


def settle_slas(engine: Engine, config: WorkspaceConfig, now: datetime) -> SlaReport:
    with session_scope(engine) as session:
        return check_sla(session=session, config=config.handoff, now=now)


def due_handoffs(engine: Engine, destination: str, now: datetime) -> int:
    """Rows of `destination` due for delivery now."""
    with session_scope(engine) as session:
        mine = [HandoffOutbox.destination == destination]
        return count_due(session=session, table=HandoffOutbox, now=now, where=mine)


def switched_off(engine: Engine, spec: HandoffDestination) -> bool:
    """True if the destination answered 410 Gone before (and still delivers to the same address)."""
    with session_scope(engine) as session:
        return disabled_reason(session, spec.name, destination_address(spec)) is not None


def switch_off(engine: Engine, spec: HandoffDestination, reason: str, now: datetime) -> None:
    """Remember a 410 Gone: the destination stays off until re-enabled or its address changes."""
    with session_scope(engine) as session:
        disable(session, spec.name, destination_address(spec), reason, now)
