"""`leadflow check` for templates: render every step for sample leads and report file and line.

Sample leads cover the cases that break templates in practice: every field present, every
optional field missing, and markup in a field (which must come out escaped).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError

from leads.config import WorkspaceConfig
from leads.records import PROFILE_FIELDS
from nurture.render import TemplateRenderer

FULL_LEAD = {
    "email": "anna.jansen@example.com",
    "first_name": "Anna",
    "last_name": "Jansen",
    "company": "Acme Logistics",
    "title": "Head of Marketing",
    "industry": "logistics",
    "company_size": 250,
    "country": "NL",
    "timezone": "Europe/Amsterdam",
    "budget": None,
    "authority": None,
    "need": None,
    "timing": None,
}
SAMPLE_LEADS = {
    "full profile": FULL_LEAD,
    "email only": {"email": "someone@example.com", **dict.fromkeys(PROFILE_FIELDS)},
    "markup in fields": {**FULL_LEAD, "first_name": "<b>Bo</b>", "company": "Fish & <Chips>"},
}


def _where(exc: BaseException, fallback: str) -> str:
    """file:line of the template frame that failed, from Jinja's rewritten traceback."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith((".html", ".txt"))]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else fallback


def check_templates(config: WorkspaceConfig, templates_dir: Path) -> list[str]:
    """One line per problem: where it is, which step, which sample lead, what went wrong."""
    renderer = TemplateRenderer(templates_dir)
    sender = config.sender.model_dump()
    problems: list[str] = []
    for sequence in config.nurture.sequences:
        for index, step in enumerate(sequence.steps, start=1):
            for label, lead in SAMPLE_LEADS.items():
                context = {"lead": lead, "sender": sender, "unsubscribe_url": "https://example.com/u/sample"}
                try:
                    renderer.render(template=step.template, subject=step.subject, context=context)
                except Exception as exc:  # noqa: BLE001 - e.g. arithmetic on a field the lead lacks
                    where = _where(exc, f"{templates_dir / step.template}")
                    what = (exc.message or exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
                    problems.append(f"{where}: {sequence.name} step {index} ({label}): {what}")
                    break
    return problems
