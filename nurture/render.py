"""Rendering nurture emails from the templates marketers write.

One sandboxed Jinja environment per template folder, built once and reused, with HTML
autoescaping (a lead's name can contain markup) and StrictUndefined, so a typo in a variable
fails when the template is checked, not in a recipient's inbox.

Email clients ignore most `<style>` rules, so the stylesheet `email.css` is inlined into the
`style` attributes of every HTML template with css-inline — once, when Jinja first loads the
template source, never per send. Jinja tags are swapped for placeholders the HTML parser
leaves alone (comments between elements, plain tokens inside tags) and put back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STYLESHEET = "email.css"

_JINJA = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
_PLACEHOLDER = re.compile(r'<!--lfj(\d+)-->|&lt;!--lfj(\d+)--&gt;|lfj(\d+)x(?:="")?')
_FULL_DOCUMENT = re.compile(r"<html[\s>]", re.I)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def inline_css(source: str, css: str) -> str:
    """An HTML template source with `css` applied as style attributes; Jinja tags come back unchanged."""
    pieces: list[str] = []
    out: list[str] = []
    inside_tag = False  # from the markup only: a `<` or `>` inside a Jinja tag does not count
    position = 0
    for match in _JINJA.finditer(source):
        markup = source[position : match.start()]
        opened, closed = markup.rfind("<"), markup.rfind(">")
        if opened != closed:
            inside_tag = opened > closed
        out.append(markup)
        out.append(f"lfj{len(pieces)}x" if inside_tag else f"<!--lfj{len(pieces)}-->")
        pieces.append(match.group(0))
        position = match.end()
    out.append(source[position:])
    protected = "".join(out)
    if _FULL_DOCUMENT.search(protected):
        inlined = css_inline.CSSInliner(extra_css=css, keep_style_tags=True, load_remote_stylesheets=False).inline(
            protected
        )
    else:
        inlined = css_inline.inline_fragment(protected, css)
    return _PLACEHOLDER.sub(lambda m: pieces[int(next(g for g in m.groups() if g is not None))], inlined)


class InliningLoader(BaseLoader):
    """Hands Jinja the `.html` sources with the stylesheet inlined; `.txt` and others as they are."""

    def __init__(self, inner: BaseLoader, css: Callable[[Environment], str | None]) -> None:
        self.inner = inner
        self.css = css

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        css = self.css(environment) if template.endswith(".html") else None
        return (inline_css(source, css) if css else source), filename, uptodate


class TemplateRenderer:
    """Renders (subject, HTML, text) for a step; compiled (and inlined) templates are cached by Jinja.

    `inline=False` renders the sources exactly as written, so error line numbers match the files
    (`leadflow check` uses it to point at the line; inlining can move markup between lines).
    """

    def __init__(self, templates_dir: Path, *, inline: bool = True) -> None:
        self.templates_dir = templates_dir
        files = ChoiceLoader([FileSystemLoader(templates_dir), FileSystemLoader(SHIPPED_TEMPLATES)])
        self._css: str | None = None
        self.env = SandboxedEnvironment(
            loader=InliningLoader(files, self._stylesheet) if inline else files,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=-1,  # every template of every sequence stays compiled for the renderer's life
        )
        self._files = files
        self._subjects: dict[str, Template] = {}

    def _stylesheet(self, environment: Environment) -> str | None:
        """The workspace's email.css (or the shipped one), read once."""
        if self._css is None:
            try:
                self._css = self._files.get_source(environment, STYLESHEET)[0]
            except TemplateNotFound:
                self._css = ""
        return self._css

    def subject(self, subject: str, context: dict[str, Any]) -> str:
        compiled = self._subjects.get(subject)
        if compiled is None:
            compiled = self._subjects[subject] = self.env.from_string(subject)
        return " ".join(compiled.render(context).split())

    def render(self, *, template: str, subject: str, context: dict[str, Any]) -> RenderedEmail:
        rendered_subject = self.subject(subject, context)
        full = {**context, "subject": rendered_subject}
        return RenderedEmail(
            subject=rendered_subject,
            html=self.env.get_template(f"{template}.html").render(full),
            text=self.env.get_template(f"{template}.txt").render(full),
        )
