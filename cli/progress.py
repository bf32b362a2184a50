"""Progress bars for `leadflow run`: one per long step (ingest, requalify, sending), with rows done, rate
and time left. Shown when stdout is a terminal, or when asked for with --progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows (emails, shards) per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        elapsed = task.finished_time if task.finished else task.elapsed
        if not speed and elapsed:  # a step that ended within one sample of the rate
            speed = task.completed / elapsed
        unit = task.fields.get("unit", "rows")
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")


@contextmanager
def progress_bars(console: Console, *, show: bool | None) -> Iterator[None]:
    """Show every step's progress as a bar while the block runs (`show` None: only on a terminal)."""
    if show is None:
        show = console.is_terminal
    if not show:
        yield
        return
    from leadflow.flows.progress import watch

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=4,
    )
    running: dict[str, TaskID] = {}

    def changed(step: str, unit: str, done: int, total: int | None, finished: bool) -> None:
        if step not in running:
            running[step] = bars.add_task(step, total=total, unit=unit)
        bars.update(running[step], completed=done, total=total)
        if finished:  # the bar stays, at 100 %; the same step run again gets a bar of its own
            del running[step]

    with bars, watch(changed):
        yield
