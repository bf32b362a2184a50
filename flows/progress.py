"""A long step's progress on the run page (a Prefect progress artifact) and, when asked, in the terminal.

The core counts rows on a `leadflow.leads.work.progress.Progress`; `step_progress` makes one whose changes go to
a progress artifact of the task run (at most every `ARTIFACT_SECONDS`: each update is a call to
the Prefect API) and to the listeners `watch` registered (the CLI's bars, a few times a second).
A failed artifact call is logged once and otherwise ignored: progress must never fail a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from uuid import UUID

from leadflow.leads.work.progress import Progress

ARTIFACT_SECONDS = 2.0
# (step, unit, done, total or None, finished)
StepListener = Callable[[str, str, int, int | None, bool], None]
_listeners: list[StepListener] = []
log = logging.getLogger(__name__)


@contextmanager
def watch(listener: StepListener) -> Iterator[None]:
    """Tell `listener` about every step's progress in this process while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class _Artifact:
    """The step's progress artifact: created at 0 %, updated as rows get done, 100 % at the end."""

    def __init__(self, step: str, unit: str) -> None:
        self.step, self.unit = step, unit
        self.id: UUID | None = None
        self.sent = 0.0
        self.broken = False
        self._call(lambda: self._create(0, None))

    def _create(self, done: int, total: int | None) -> None:
        from prefect.artifacts import create_progress_artifact

        made = create_progress_artifact(self._percent(done, total), description=self._describe(done, total))
        self.id = cast(UUID, made)  # the sync call (the async one would return a coroutine)

    def update(self, done: int, total: int | None, finished: bool) -> None:
        if self.id is None or self.broken or (not finished and time.monotonic() - self.sent < ARTIFACT_SECONDS):
            return
        from prefect.artifacts import update_progress_artifact

        artifact_id = self.id
        percent = 100.0 if finished else self._percent(done, total)
        self._call(lambda: update_progress_artifact(artifact_id, percent, description=self._describe(done, total)))

    def _call(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # e.g. no run context, the API away: the work goes on without it
            self.broken = True
            log.warning("progress of %s not shown on the run page: %s", self.step, exc)
        self.sent = time.monotonic()

    @staticmethod
    def _percent(done: int, total: int | None) -> float:
        return min(100.0 * done / total, 99.9) if total else 0.0  # 100 only when the step has finished

    def _describe(self, done: int, total: int | None) -> str:
        of = f" of {'about ' if self.unit == 'rows' else ''}{total:,}" if total else ""
        return f"{self.step}: {done:,}{of} {self.unit} done"


@contextmanager
def step_progress(step: str, *, unit: str = "rows", total: int | None = None) -> Iterator[Progress]:
    """A `Progress` for the core, shown on the run page and to `watch`ers; finished (100 %) when the
    block ends without an error. Call it inside a task or flow run."""
    artifact = _Artifact(step, unit)

    def changed(done: int, known: int | None, finished: bool) -> None:
        artifact.update(done, known, finished)
        for listener in list(_listeners):
            listener(step, unit, done, known, finished)

    progress = Progress(changed, total=total)
    if total is not None:
        progress.expect(total)
    yield progress
    progress.finish()
