"""Printing `leadflow preview`: subject, text part and HTML part of one step, or the HTML to a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from leadflow.leads.config.settings import Settings
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.nurture.preview import preview_step


@dataclass(frozen=True)
class PreviewRequest:
    sequence: str
    step: str
    lead: str | None = None  # an email address in the database; None renders for a sample lead
    html_out: Path | None = None


def run_preview(
    console: Console,
    settings: Settings,
    config: WorkspaceConfig,
    request: PreviewRequest,
    *,
    engine: Engine | None = None,
) -> None:
    """Print one step's email; `engine` (the workspace's) is needed only to render for a stored lead."""
    lead, html_out = request.lead, request.html_out
    fields = _stored_lead(engine, lead) if lead and engine is not None else None
    shown = preview_step(
        config=config,
        templates_dir=settings.config_file.parent / config.templates_dir,
        sequence=request.sequence,
        step=request.step,
        lead=fields,
        unsubscribe_url=f"{settings.public_base_url.rstrip('/')}/u/PREVIEW",
    )

    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    say(f"{shown.sequence} step {shown.step_number} ({shown.step_id}, template {shown.template})")
    say(f"To: {shown.lead_email}" + ("" if lead else " (a sample lead; --lead EMAIL renders a real one)"))
    say(f"Subject: {shown.email.subject}")
    say("\n----- text part -----")
    say(shown.email.text.rstrip("\n"))
    if html_out is not None:
        html_out.write_text(shown.email.html, encoding="utf-8")
        say(f"\n----- HTML part written to {html_out} (open it in a browser) -----")
    else:
        say("\n----- HTML part -----")
        say(shown.email.html.rstrip("\n"))
    say("\nThe unsubscribe link is a placeholder in previews; sent emails carry the lead's own link.")


def _stored_lead(engine: Engine, email: str) -> dict[str, object]:
    from leadflow.leads.db.engine import session_scope
    from leadflow.nurture.preview import lead_fields

    with session_scope(engine) as session:
        return lead_fields(session=session, email=email)
