"""From which SQLs on each handoff destination receives them.

A CRM or webhook added to a workspace that has handed SQLs to sales for months must not receive
all of those months' SQLs on its first run (hundreds of stale tasks for sales). So the first time
a destination runs, leadflow records where it starts:

- in a workspace that has handed nothing to anyone yet (its first run), with every SQL;
- when the destination already has handoffs of its own (written before starts were recorded, or
  it was switched off and on), with every SQL it lacks, as before;
- otherwise after the last SQL handed to any other destination: it gets the SQLs that were not
  handed to anyone yet (this run's, and those waiting for an owner) and every later one.

`since` on the destination overrides that: a moment (SQLs made from then on) or `all`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, or_, select, true
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.handoff import ALL_SQLS
from leadflow.leads.db.models import DestinationStart, HandoffOutbox, Stage, StageTransition

Since = datetime | str | None  # a destination's `since`: a moment, "all", or unset


@dataclass(frozen=True)
class Start:
    """Where one destination starts. `after`: the transition id it starts after (automatic rule); `since`: the
    configured moment; neither: every SQL. `left_out`: SQLs handed to other destinations before it was
    added, not to it (counted when the start is first recorded)."""

    after: int | None = None
    since: datetime | None = None
    recorded: bool = False
    left_out: int = 0

    def condition(self) -> ColumnElement[bool]:
        """Whether this destination receives a transition, in SQL over StageTransition."""
        if self.since is not None:
            return col(StageTransition.at) >= self.since
        if self.after is None:
            return true()
        return or_(
            col(StageTransition.id) > self.after,
            ~exists().where(col(HandoffOutbox.transition_id) == col(StageTransition.id)),
        )


def destination_starts(session: Session, destinations: Iterable[tuple[str, Since]], now: datetime) -> dict[str, Start]:
    """Each destination's start, recording it (in the caller's transaction) the first time one runs."""
    starts: dict[str, Start] = {}
    for name, since in destinations:
        # Recorded even when `since` overrides it, so that removing `since` later does not make the
        # destination look new (or old) then.
        automatic = _automatic(session, name, now)
        if since == ALL_SQLS:
            starts[name] = Start()
        elif isinstance(since, datetime):
            starts[name] = Start(since=since)
        else:
            starts[name] = automatic
    return starts


def _automatic(session: Session, name: str, now: datetime) -> Start:
    row = session.get(DestinationStart, name)
    if row is not None:
        return Start(after=row.after_transition)
    own = session.execute(select(exists().where(col(HandoffOutbox.destination) == name))).scalar()
    last = None if own else session.execute(select(func.max(col(HandoffOutbox.transition_id)))).scalar()
    session.add(DestinationStart(name=name, after_transition=last, recorded_at=now))
    session.flush()
    left_out = 0 if last is None else _left_out(session, last)
    return Start(after=last, recorded=True, left_out=left_out)


def _left_out(session: Session, last: int) -> int:
    """SQLs up to `last` that some destination has: a destination starting after `last` will not get them."""
    handed = exists().where(col(HandoffOutbox.transition_id) == col(StageTransition.id))
    return int(
        session.execute(
            select(func.count())
            .select_from(StageTransition)
            .where(col(StageTransition.to_stage) == Stage.sql.value, col(StageTransition.id) <= last, handed)
        ).scalar_one()
    )


def left_out_message(name: str, start: Start) -> str | None:
    """For the run report: a destination that starts now, and what it leaves out."""
    if not start.recorded or start.after is None:
        return None
    return (
        f"{name} is new: it receives the SQLs from now on; the {start.left_out} handed to other destinations "
        "before it was added are not sent to it (set `since: all` or a date on it to send them)"
    )
