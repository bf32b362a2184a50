"""The recipient-facing HTML pages: Jinja templates in web/pages/, autoescaped, built once per app.

Every page is a plain document (no scripts, no external resources) sent with headers that keep it
out of caches, search engines and frames, and that send no Referer carrying a token elsewhere.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from leadflow.leads.config.workspace import Sender

PAGE_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex, nofollow",
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Pages:
    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.env = Environment(
            loader=PackageLoader("leadflow.web", "pages"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            auto_reload=False,
        )

    def render(self, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"{name}.html").render(sender=self.sender, **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def problem(self, status: int, title: str, message: str) -> HTMLResponse:
        """A page that says what went wrong and what to do, with the matching 4xx status."""
        return self.render("problem", status=status, title=title, message=message)


def masked(email: str) -> str:
    """Enough of an address for its owner to recognise it, not enough to harvest it: a•••@example.com."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"
