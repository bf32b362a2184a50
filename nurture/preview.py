"""`leadflow preview`: one step of one sequence rendered as it would be sent, for a real or sample lead.

The unsubscribe link in a preview is a placeholder on purpose: a marketer clicking around a
preview must never unsubscribe the real lead it was rendered for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import PROFILE_FIELDS, Lead
from leadflow.nurture.checks import FULL_LEAD, describe_error, where_in_template
from leadflow.nurture.render import RenderedEmail, TemplateRenderer


class PreviewError(ValueError):
    """The sequence, step or lead does not exist, or the template failed (with file and line)."""


@dataclass(frozen=True)
class Preview:
    sequence: str
    step_number: int  # 1-based, as marketers count
    step_id: str
    template: str
    lead_email: str
    email: RenderedEmail


def lead_fields(*, session: Session, email: str) -> dict[str, Any]:
    """What a template sees of the stored lead with this email (the same fields the sender passes)."""
    lead = session.scalars(select(Lead).where(col(Lead.email) == email.strip().lower())).first()
    if lead is None:
        raise PreviewError(f"no lead with email {email!r} in the database")
    return {"email": lead.email, **{name: getattr(lead, name) for name in PROFILE_FIELDS}}


def preview_step(
    *,
    config: WorkspaceConfig,
    templates_dir: Path,
    sequence: str,
    step: str,
    lead: dict[str, Any] | None = None,
    unsubscribe_url: str = "https://example.com/u/PREVIEW",
) -> Preview:
    """Render `step` (an id, a template name, or a 1-based number) of `sequence` for `lead` (default: a sample)."""
    chosen = next((s for s in config.nurture.sequences if s.name == sequence), None)
    if chosen is None:
        names = ", ".join(s.name for s in config.nurture.sequences) or "none"
        raise PreviewError(f"no sequence {sequence!r} (sequences: {names})")
    index = chosen.step_index(step)
    if index is None:
        ids = ", ".join(f"{i}={s.key}" for i, s in enumerate(chosen.steps, start=1))
        raise PreviewError(f"{sequence} has no step {step!r} (steps: {ids})")
    the_step = chosen.steps[index]
    fields = lead or FULL_LEAD
    context = {"lead": fields, "sender": config.sender.model_dump(), "unsubscribe_url": unsubscribe_url}
    try:
        email = TemplateRenderer(templates_dir).render(
            template=the_step.template, subject=the_step.subject, context=context
        )
    except Exception:  # noqa: BLE001 - render as written again to point at the line in the file
        try:
            TemplateRenderer(templates_dir, inline=False).render(
                template=the_step.template, subject=the_step.subject, context=context
            )
        except Exception as exc:  # noqa: BLE001
            where = where_in_template(exc, str(templates_dir / the_step.template))
            raise PreviewError(f"{where}: {describe_error(exc)}") from None
        raise
    return Preview(
        sequence=chosen.name,
        step_number=index + 1,
        step_id=the_step.key,
        template=the_step.template,
        lead_email=str(fields.get("email")),
        email=email,
    )
