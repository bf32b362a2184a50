"""Turning a due outbox row into the finished email: its step's templates, tracked links, MIME bytes.

The same composer serves a real send and the dry run, so a preview shows exactly what would go out
and fails (or holds a step) exactly where a send would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from leadflow.connectors.mail import Envelope
from leadflow.leads.config.nurture import NurtureStep
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.nurture.due import Due
from leadflow.nurture.held import TemplateGate
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.message import compose
from leadflow.nurture.render import RenderedEmail, TemplateRenderer


class StepGone(LookupError):
    """The row's sequence or step was removed from the config after it was queued."""


@dataclass
class Composer:
    """Renders and composes the email for a due row (templates cached by the renderer)."""

    config: WorkspaceConfig
    renderer: TemplateRenderer
    links: LinkSigner
    gate: TemplateGate | None = None  # holds a step whose template fails for a lead

    def __post_init__(self) -> None:
        self._steps: dict[str, list[NurtureStep]] = {s.name: list(s.steps) for s in self.config.nurture.sequences}
        self._sender = self.config.sender.model_dump()

    def step(self, due: Due) -> NurtureStep:
        steps = self._steps.get(due.sequence)
        if steps is None or due.step >= len(steps):
            raise StepGone("step no longer in config")
        return steps[due.step]

    def envelope(self, due: Due) -> Envelope:
        """The finished message; raises StepGone, or whatever a broken template raises."""
        return self.message(due)[1]

    def context(self, due: Due) -> dict[str, Any]:
        """What the templates see for this row."""
        unsubscribe = self.links.unsubscribe_url(due.lead_id, due.sequence)
        return {"lead": due.lead, "sender": self._sender, "unsubscribe_url": unsubscribe}

    def message(self, due: Due) -> tuple[RenderedEmail, Envelope]:
        step = self.step(due)
        context = self.context(due)
        unsubscribe = context["unsubscribe_url"]
        rendered = self.renderer.render(template=step.template, subject=step.subject, context=context)
        html = self.links.track(
            rendered.html, lead_id=due.lead_id, sequence=due.sequence, step=due.step, unsubscribe_url=unsubscribe
        )
        envelope = compose(
            sender=self.config.sender,
            to=due.recipient.email,
            rendered=replace(rendered, html=html),
            idempotency_key=due.key,
            unsubscribe_url=unsubscribe,
        )
        return rendered, envelope


def held_error(composer: Composer, due: Due, exc: Exception) -> str:
    """Why a row waits: where its template fails (file:line when the gate can tell)."""
    if composer.gate is None:
        return f"held: template {composer.step(due).template}: {type(exc).__name__}: {exc}"
    return f"held: {composer.gate.hold(due.sequence, due.step, exc, composer.context(due)).describe()}"
