"""When to give a failed delivery up (the dead-letter horizon).

Shared by the handoff and notification outboxes, which wait between tries by
`connectors.backoff.OUTBOX_BACKOFF`: a horizon of attempts and/or hours since the row was queued
(or re-driven with `leadflow handoff retry`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from leadflow.leads.config.assignment import DeadLetterConfig


def past_horizon(
    *, attempts: int, queued_at: datetime, now: datetime, horizon: DeadLetterConfig, next_try: datetime | None = None
) -> bool:
    """True when a row that just failed should be dead-lettered rather than retried.

    With `next_try`, a retry that would only happen after the time horizon counts as past it, so
    a long Retry-After does not keep a row alive beyond the configured hours.
    """
    if attempts >= horizon.attempts:
        return True
    if horizon.hours is None:
        return False
    limit = queued_at + timedelta(hours=horizon.hours)
    return now >= limit or (next_try is not None and next_try > limit)
