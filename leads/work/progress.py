"""Progress of long work (ingest, requalify, sending), told by the core and shown by the outer layers.

The core only counts: it takes an optional `Progress` and calls `advance(rows)` as rows get done.
Whoever made the `Progress` (a flow: a Prefect progress artifact; the CLI: a bar) hears of it through
`on_change`, at most every `interval` seconds, so counting costs the work next to nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# (done, total or None when not known, finished)
Listener = Callable[[int, int | None, bool], None]


class Progress:
    """Rows done out of an expected total; safe to advance from several threads (parallel senders)."""

    def __init__(self, on_change: Listener | None = None, *, total: int | None = None, interval: float = 0.25) -> None:
        self.done = 0
        self.total = total
        self.interval = interval
        self._on_change = on_change
        self._told = 0.0
        self._lock = threading.Lock()
        self._telling = threading.Lock()  # one listener call at a time; a throttled one just skips

    def expect(self, total: int | None) -> None:
        """Set the expected total (an estimate is fine: `finish` makes the end 100%)."""
        with self._lock:
            self.total = total
        self._tell(force=True)

    def advance(self, rows: int = 1) -> None:
        with self._lock:
            self.done += rows
        self._tell()

    def finish(self) -> None:
        """The work is over: the total is what was done (an estimate may have been off)."""
        with self._lock:
            self.total = self.done
        self._tell(force=True, finished=True)

    def _tell(self, *, force: bool = False, finished: bool = False) -> None:
        if self._on_change is None:
            return
        now = time.monotonic()
        if not force and (now - self._told < self.interval or self._telling.locked()):
            return
        with self._telling:
            self._told = now
            self._on_change(self.done, self.total, finished)


def advance(progress: Progress | None, rows: int = 1) -> None:
    """`progress.advance(rows)` when there is a `progress`: the core's one-line hook."""
    if progress is not None:
        progress.advance(rows)
