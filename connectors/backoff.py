"""The one backoff policy: how long to wait before trying something outside again, and when to stop.

The formula is the same for every caller; the parameters differ. The wait doubles from
`base_delay` per failed attempt up to `max_delay`, spread by ±`jitter` so workers that failed
together do not return together. A peer's Retry-After is honoured in one of two ways:

- within a run (HTTP sources and CRM calls, `RetryPolicy`) the wait *is* the Retry-After, a
  little later (up to +`jitter`) to spread workers; one longer than `max_retry_after` (a daily
  quota, say) is not waited out: the run gives up and the next one resumes;
- across runs (the handoff, notification and email outboxes) it is a floor under the usual
  spacing (`retry_after_is_floor`): the row is due again no sooner than the peer asked.

`attempts` caps the tries (None: the caller's own horizon decides, as the outboxes' dead letters do).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["OUTBOX_BACKOFF", "Backoff", "RetryPolicy"]


@dataclass(frozen=True)
class Backoff:
    """Exponential, capped, jittered waits that honour a Retry-After, up to a number of attempts."""

    attempts: int | None = None
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float | None = None
    jitter: float = 0.1
    retry_after_is_floor: bool = False

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempt` failed tries (1 = the first), whatever the limits say."""
        doubling = 2.0 ** min(max(attempt - 1, 0), 60)  # the cap is reached long before; 2**10000 overflows
        spaced = min(self.max_delay, self.base_delay * doubling)
        spaced *= random.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is None:
            return spaced
        if self.retry_after_is_floor:
            return max(spaced, retry_after)
        return retry_after * random.uniform(1, 1 + self.jitter)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up (attempts spent, Retry-After too long)."""
        if self.attempts is not None and attempt >= self.attempts:
            return None
        if retry_after is not None and self.max_retry_after is not None and retry_after > self.max_retry_after:
            return None
        return self.wait(attempt, retry_after)


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """In-run retries of an HTTP call: six attempts from 1 s to 60 s, a Retry-After waited up to 5 min.

    `sleep` is injectable so tests record the waits instead of sleeping them.
    """

    attempts: int | None = 6
    max_retry_after: float | None = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)


# The outboxes (handoff, notifications, email): 30 s, 60 s, 120 s … capped at an hour, ±20 %,
# never sooner than a Retry-After; their dead-letter horizon (or attempt limit) decides when to stop.
OUTBOX_BACKOFF = Backoff(base_delay=30.0, max_delay=3600.0, jitter=0.2, retry_after_is_floor=True)
