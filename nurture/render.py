"""Rendering nurture emails from the templates marketers write.

One sandboxed Jinja environment per template folder, built once and reused, with HTML
autoescaping (a lead's name can contain markup) and StrictUndefined, so a typo in a variable
fails when the template is checked, not in a recipient's inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class TemplateRenderer:
    """Renders (subject, HTML, text) for a step; compiled templates are cached by Jinja."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader([FileSystemLoader(templates_dir), FileSystemLoader(SHIPPED_TEMPLATES)]),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self._subjects: dict[str, Template] = {}

    def render(self, *, template: str, subject: str, context: dict[str, Any]) -> RenderedEmail:
        compiled = self._subjects.get(subject)
        if compiled is None:
            compiled = self._subjects[subject] = self.env.from_string(subject)
        rendered_subject = " ".join(compiled.render(context).split())
        full = {**context, "subject": rendered_subject}
        return RenderedEmail(
            subject=rendered_subject,
            html=self.env.get_template(f"{template}.html").render(full),
            text=self.env.get_template(f"{template}.txt").render(full),
        )
