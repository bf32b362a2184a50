"""`leadflow check` for templates: render every step for sample leads and report file and line.

Sample leads cover the cases that break templates in practice: every field present, every
optional field missing, and markup in a field (which must come out escaped). Templates are
rendered as written first, so an error points at the line in the file the marketer edits, then
as sent (with the stylesheet inlined). Every email must show the unsubscribe link and the
sender's postal address: the law asks for both, so a layout without them is a problem too.
"""

from __future__ import annotations

import html
import traceback
from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.nurture.render import RenderedEmail, TemplateRenderer

SAMPLE_UNSUBSCRIBE_URL = "https://example.com/u/sample"
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


def where_in_template(exc: BaseException, fallback: str) -> str:
    """file:line of the template frame that failed, from Jinja's rewritten traceback."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith((".html", ".txt"))]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else fallback


def describe_error(exc: BaseException) -> str:
    return str(exc.message or exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"


def footer_problems(email: RenderedEmail, *, unsubscribe_url: str, postal_address: str) -> list[str]:
    """What the footer lacks: a visible unsubscribe link and the postal address, in both parts."""
    missing = []
    if f'href="{html.escape(unsubscribe_url)}"' not in email.html:
        missing.append('the HTML part has no unsubscribe link (<a href="{{ unsubscribe_url }}">)')
    if unsubscribe_url not in email.text:
        missing.append("the text part does not show {{ unsubscribe_url }}")
    if html.escape(postal_address) not in email.html:
        missing.append("the HTML part does not show {{ sender.postal_address }}")
    if postal_address not in email.text:
        missing.append("the text part does not show {{ sender.postal_address }}")
    return missing


def check_templates(config: WorkspaceConfig, templates_dir: Path) -> list[str]:
    """One line per problem: where it is, which step, which sample lead, what went wrong."""
    as_written = TemplateRenderer(templates_dir, inline=False)
    as_sent = TemplateRenderer(templates_dir)
    sender = config.sender.model_dump()
    problems: list[str] = []
    for s, sequence in enumerate(config.nurture.sequences):
        for index, step in enumerate(sequence.steps, start=1):
            fallback = f"{templates_dir / step.template}"
            for label, lead in SAMPLE_LEADS.items():
                context = {"lead": lead, "sender": sender, "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL}
                here = f"{sequence.name} step {index} ({label})"
                try:
                    as_written.subject(step.subject, context)
                except Exception as exc:  # noqa: BLE001 - the subject line lives in leadflow.yaml, not a file
                    key = f"nurture.sequences[{s}].steps[{index - 1}].subject"
                    problems.append(f"leadflow.yaml {key}: {here}: {describe_error(exc)}")
                    break
                try:
                    as_written.render(template=step.template, subject=step.subject, context=context)
                except Exception as exc:  # noqa: BLE001 - e.g. arithmetic on a field the lead lacks
                    problems.append(f"{where_in_template(exc, fallback)}: {here}: {describe_error(exc)}")
                    break
                try:
                    email = as_sent.render(template=step.template, subject=step.subject, context=context)
                except Exception as exc:  # noqa: BLE001 - markup the CSS inliner could not keep whole
                    problems.append(f"{fallback}.html: {here}: after inlining email.css: {describe_error(exc)}")
                    break
                missing = footer_problems(
                    email, unsubscribe_url=SAMPLE_UNSUBSCRIBE_URL, postal_address=config.sender.postal_address
                )
                if missing:
                    problems.append(f"{fallback}: {here}: " + "; ".join(missing))
                    break
    return problems


def engagement_warnings(config: WorkspaceConfig, *, track_opens: bool) -> list[str]:
    """Waits and branches on opens when leadflow records none: they only see opens from other sources."""
    if track_opens:
        return []
    warnings = []
    for sequence in config.nurture.sequences:
        for index, step in enumerate(sequence.steps, start=1):
            uses = [b.if_ for b in step.branches] + ([step.wait_for.event] if step.wait_for else [])
            if "opened" in uses:
                warnings.append(
                    f"{sequence.name} step {index} ({step.key}) looks at opens, but LEADFLOW_TRACK_OPENS is off: "
                    "only opens reported by your other sources will count"
                )
    return warnings
