"""Holding nurture steps whose templates fail, so a template typo delays emails instead of losing them.

Before a run queues or sends anything, every step's subject and templates are rendered for the
sample leads of `leadflow check` (a few milliseconds a step): as written, so an error names the line
of the file the marketer edits, then as sent (stylesheet inlined). A step that fails is held for
the run: leads at it, or headed for it, stay where they are; its queued emails stay pending with no
attempt counted. A template that renders for the samples but fails for a real lead holds its step
when that email is rendered. If a held step held anything back, the run then fails, naming file and
line; after the fix the next run sends what waited, once each.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, NurtureEnrollment, OutboxStatus
from leadflow.nurture.checks import SAMPLE_LEADS, SAMPLE_UNSUBSCRIBE_URL, describe_error, where_in_template
from leadflow.nurture.render import TemplateRenderer

Step = tuple[str, int]  # (sequence name, index of the step in its list)


@dataclass
class HeldStep:
    """A step whose emails wait for a template fix, where the error is, and how many emails wait."""

    sequence: str
    index: int
    step: str  # the step's id (or template)
    where: str  # file:line, e.g. templates/warm-up/1-welcome.html:3
    error: str
    emails: int = 0  # due enrollments and queued emails held back (counted at the end of the run)

    def describe(self) -> str:
        return f"{self.where}: {self.error} (sequence {self.sequence}, step {self.index + 1} {self.step!r})"


def at_steps(sequence: Any, step: Any, steps: Iterable[Step]) -> ColumnElement[bool]:
    """SQL: the row's (sequence, step) is one of `steps`."""
    pairs = sorted(steps)
    return or_(*(and_(sequence == name, step == index) for name, index in pairs)) if pairs else false()


class TemplateGate:
    """Checks each due step once per run and remembers the held ones; safe to share between sender threads."""

    def __init__(self, config: WorkspaceConfig, templates_dir: Path) -> None:
        self.config = config
        self.templates_dir = templates_dir
        self._root = templates_dir.parent  # errors name files relative to the workspace
        self._steps = {s.name: s for s in config.nurture.sequences}
        self._checked: dict[Step, HeldStep | None] = {}
        self._lock = threading.Lock()
        self._renderers: tuple[TemplateRenderer, TemplateRenderer] | None = None
        self.jumped: dict[int, Step] = {}  # enrollments held because a branch leads to a held step

    def _render(self) -> tuple[TemplateRenderer, TemplateRenderer]:
        if self._renderers is None:  # fresh environments: the files as they are now, not as cached
            self._renderers = (TemplateRenderer(self.templates_dir, inline=False), TemplateRenderer(self.templates_dir))
        return self._renderers

    def problem(self, sequence: str, index: int) -> HeldStep | None:
        """The held step, if this step's templates fail for a sample lead; None if fine or no longer configured."""
        key = (sequence, index)
        with self._lock:
            if key not in self._checked:
                self._checked[key] = self._check(sequence, index)
            return self._checked[key]

    def check_all(self) -> None:
        """Check every configured step (a few renders each, done once): cheaper than finding the due ones first.

        A broken step nothing is due for holds nothing, and `count_held` leaves it out.
        """
        for sequence in self._steps.values():
            for index in range(len(sequence.steps)):
                self.problem(sequence.name, index)

    def held(self) -> list[HeldStep]:
        with self._lock:
            return [h for h in self._checked.values() if h is not None]

    def held_steps(self) -> frozenset[Step]:
        return frozenset((h.sequence, h.index) for h in self.held())

    def holds(self) -> tuple[int, int]:
        """Changes whenever something new is held: a batch that queued nothing but held more is progress."""
        with self._lock:
            return sum(h is not None for h in self._checked.values()), len(self.jumped)

    def is_held(self, sequence: str, index: int) -> bool:
        with self._lock:
            return self._checked.get((sequence, index)) is not None

    def hold(self, sequence: str, index: int, exc: BaseException, context: dict[str, Any]) -> HeldStep:
        """Hold a step whose template failed while sending (for a real lead the samples did not cover)."""
        step = self._steps[sequence].steps[index]
        where, error = self._locate(step.template, step.subject, context, exc)
        held = HeldStep(sequence, index, step.key, where, error)
        with self._lock:  # the samples may have passed (None): a real lead's failure holds the step all the same
            first = self._checked.get((sequence, index))
            if first is None:
                self._checked[(sequence, index)] = first = held
            return first

    def _check(self, sequence: str, index: int) -> HeldStep | None:
        found = self._steps.get(sequence)
        if found is None or index >= len(found.steps):
            return None  # sent as "step no longer in config" by the outbox; nothing to hold
        step = found.steps[index]
        sender = self.config.sender.model_dump()
        for label, lead in SAMPLE_LEADS.items():
            context = {"lead": lead, "sender": sender, "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL}
            try:
                for renderer in self._render():
                    renderer.render(template=step.template, subject=step.subject, context=context)
            except Exception as exc:  # noqa: BLE001 - any failure to render holds the step
                where, error = self._locate(step.template, step.subject, context, exc)
                sample = "" if label == "full profile" else f" (for a lead like the sample {label!r})"
                return HeldStep(sequence, index, step.key, where, error + sample)
        return None

    def _locate(self, template: str, subject: str, context: dict[str, Any], exc: BaseException) -> tuple[str, str]:
        """file:line and message; re-rendered as written when the error came from the inlined copy."""
        as_written, _ = self._render()
        try:
            as_written.subject(subject, context)
        except Exception as subject_error:  # noqa: BLE001 - the subject line lives in leadflow.yaml
            return f"leadflow.yaml (subject of {template})", describe_error(subject_error)
        try:
            as_written.render(template=template, subject=subject, context=context)
        except Exception as written_error:  # noqa: BLE001 - the error, at its line in the file as written
            return self._relative(where_in_template(written_error, str(self.templates_dir / template))), describe_error(
                written_error
            )
        where = self._relative(str(self.templates_dir / f"{template}.html"))
        return where, f"after inlining email.css: {describe_error(exc)}"

    def _relative(self, where: str) -> str:
        root = f"{self._root}/"
        return where[len(root) :] if where.startswith(root) else where


def count_held(*, session: Session, gate: TemplateGate, now: datetime) -> list[HeldStep]:
    """The held steps that held emails back, with `emails` filled in: leads due at (or headed for) them, and
    their queued emails. A broken step with nothing due is left out: it failed no one yet."""
    held = gate.held()
    if not held:
        return []
    steps = gate.held_steps()
    E = NurtureEnrollment
    counts: Counter[Step] = Counter()
    for name, index, n in session.execute(
        select(col(E.sequence), col(E.step), func.count())
        .where(col(E.status) == EnrollmentStatus.active, col(E.next_due_at) <= now, at_steps(E.sequence, E.step, steps))
        .group_by(col(E.sequence), col(E.step))
    ):
        counts[(name, index)] += n
    counts.update(gate.jumped.values())
    for name, index, n in session.execute(
        select(col(EmailOutbox.sequence), col(EmailOutbox.step), func.count())
        .where(
            col(EmailOutbox.status).in_([OutboxStatus.pending.value, OutboxStatus.sending.value]),
            at_steps(EmailOutbox.sequence, EmailOutbox.step, steps),
        )
        .group_by(col(EmailOutbox.sequence), col(EmailOutbox.step))
    ):
        counts[(name, index)] += n
    for step in held:
        step.emails = counts[(step.sequence, step.index)]
    return [step for step in held if step.emails]
