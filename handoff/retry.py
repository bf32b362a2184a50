"""When to try a failed delivery again, and when to give it up (the dead-letter horizon).

Shared by the handoff and notification outboxes: exponential backoff with jitter, never sooner
than the peer's Retry-After, and a horizon of attempts and/or hours since the row was queued
(or re-driven with `leadflow handoff retry`).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from leadflow.leads.config.assignment import DeadLetterConfig

BASE_DELAY = 30.0
MAX_DELAY = 3600.0


def backoff(attempts: int, retry_after: float | None = None, *, jitter: float = 0.2) -> float:
    """Seconds to wait after `attempts` failed tries: 30 s, 60 s, 120 s … capped at an hour, ±20 %."""
    delay = min(MAX_DELAY, BASE_DELAY * 2 ** max(attempts - 1, 0)) * random.uniform(1 - jitter, 1 + jitter)
    return max(delay, retry_after or 0.0)


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
