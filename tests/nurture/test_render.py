"""Rendering the shipped and workspace templates in the sandboxed, strict, autoescaping environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.models import PROFILE_FIELDS
from leadflow.nurture.render import SHIPPED_TEMPLATES, TemplateRenderer

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
UNSUBSCRIBE = "https://mail.acme.example/u/tok3n"
SENDER = {
    "from_name": "Acme Growth Team",
    "from_email": "hello@acme.example",
    "reply_to": None,
    "postal_address": "Acme B.V., Keizersgracht 123, Amsterdam",
}
FULL = {
    "email": "anna@acme-logistics.example",
    **dict.fromkeys(PROFILE_FIELDS),
    "first_name": "Anna",
    "last_name": "Jansen",
    "company": "Acme Logistics",
    "industry": "logistics",
}
EMAIL_ONLY = {"email": "someone@example.com", **dict.fromkeys(PROFILE_FIELDS)}


def _context(lead: dict[str, Any]) -> dict[str, Any]:
    return {"lead": lead, "sender": SENDER, "unsubscribe_url": UNSUBSCRIBE}


def _steps() -> list[tuple[str, str]]:
    config = load_config(EXAMPLE)
    return [(s.template, s.subject) for seq in config.nurture.sequences for s in seq.steps]


def test_example_config_uses_the_shipped_warm_up_templates() -> None:
    templates = [t for t, _ in _steps()]
    assert templates == [
        "warm-up/1-welcome",
        "warm-up/2-case-study",
        "warm-up/checklist",
        "warm-up/3-demo",
        "warm-up/2-case-study",  # the recycled sequence reuses warm-up's later emails (issue 16)
        "warm-up/checklist",
        "warm-up/3-demo",
        "re-engage/1-still-relevant",
        "re-engage/2-last-call",
    ]
    for name in templates:
        assert (SHIPPED_TEMPLATES / f"{name}.html").is_file()
        assert (SHIPPED_TEMPLATES / f"{name}.txt").is_file()


@pytest.mark.parametrize("template,subject", _steps(), ids=lambda v: v if "/" in v else None)
def test_shipped_steps_render_for_a_full_lead(tmp_path: Path, template: str, subject: str) -> None:
    renderer = TemplateRenderer(tmp_path)  # empty workspace folder: shipped templates are used
    email = renderer.render(template=template, subject=subject, context=_context(FULL))
    assert email.subject and "\n" not in email.subject and "{{" not in email.subject
    assert "Hi Anna," in email.html and "Hi Anna," in email.text
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert f"<title>{email.subject}</title>" in email.html
    for body in (email.html, email.text):
        assert UNSUBSCRIBE in body
        assert SENDER["postal_address"] in body
        assert "Best regards" in body and SENDER["from_name"] in body
        assert "{{" not in body and "{%" not in body
    assert "<" not in email.text  # the text part carries no markup


def test_subjects_use_lead_fields_or_their_fallbacks(tmp_path: Path) -> None:
    renderer = TemplateRenderer(tmp_path)
    (_, welcome), (_, case_study), *_ = _steps()
    full = [
        renderer.render(template="warm-up/1-welcome", subject=s, context=_context(FULL)).subject
        for s in (welcome, case_study)
    ]
    bare = [
        renderer.render(template="warm-up/1-welcome", subject=s, context=_context(EMAIL_ONLY)).subject
        for s in (welcome, case_study)
    ]
    assert full == [
        "Anna, three signs a lead is ready for sales",
        "How Acme Logistics could cut follow-up time in half",
    ]
    assert bare == [
        "Hi, three signs a lead is ready for sales",
        "How teams like yours could cut follow-up time in half",
    ]


@pytest.mark.parametrize("template,subject", _steps(), ids=lambda v: v if "/" in v else None)
def test_shipped_steps_render_for_an_email_only_lead(tmp_path: Path, template: str, subject: str) -> None:
    email = TemplateRenderer(tmp_path).render(template=template, subject=subject, context=_context(EMAIL_ONLY))
    assert "Hi there," in email.html and "Hi there," in email.text
    for body in (email.html, email.text):
        assert "None" not in body  # a missing field never prints as Python's None
        assert UNSUBSCRIBE in body and SENDER["postal_address"] in body


def test_case_study_mentions_the_company_only_when_known(tmp_path: Path) -> None:
    renderer = TemplateRenderer(tmp_path)
    with_company = renderer.render(template="warm-up/2-case-study", subject="x", context=_context(FULL))
    without = renderer.render(template="warm-up/2-case-study", subject="x", context=_context(EMAIL_ONLY))
    assert "If Acme Logistics gets more leads than sales can call" in with_company.text
    assert "The same approach works" in without.text


def test_markup_in_lead_fields_is_escaped_in_html_and_plain_in_text(tmp_path: Path) -> None:
    lead = {**FULL, "first_name": "<script>alert(1)</script>", "company": "<b>Fish</b> & Chips"}
    email = TemplateRenderer(tmp_path).render(
        template="warm-up/2-case-study",
        subject="How {{ lead.company }} could cut follow-up time in half",
        context=_context(lead),
    )
    assert "<script>" not in email.html and "<b>Fish</b>" not in email.html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in email.html
    assert "If &lt;b&gt;Fish&lt;/b&gt; &amp; Chips gets more leads" in email.html
    # The subject is a header, not HTML: it stays as typed, and is escaped where the HTML shows it.
    assert email.subject == "How <b>Fish</b> & Chips could cut follow-up time in half"
    assert "<title>How &lt;b&gt;Fish&lt;/b&gt; &amp; Chips could" in email.html
    assert "Hi <script>alert(1)</script>," in email.text
    assert "If <b>Fish</b> & Chips gets more leads" in email.text
    assert "&lt;" not in email.text and "&amp;" not in email.text


def test_missing_variable_raises_instead_of_rendering_blank(tmp_path: Path) -> None:
    renderer = TemplateRenderer(tmp_path)
    with pytest.raises(UndefinedError, match="unsubscribe_url"):
        renderer.render(template="warm-up/1-welcome", subject="Hello", context={"lead": FULL, "sender": SENDER})
    with pytest.raises(UndefinedError, match="frist_name"):
        renderer.render(template="warm-up/1-welcome", subject="Hi {{ lead.frist_name }}", context=_context(FULL))


@pytest.mark.parametrize(
    "expression",
    [
        "{{ lead.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ sender.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path, expression: str) -> None:
    renderer = TemplateRenderer(tmp_path)
    # In a subject line ...
    with pytest.raises(SecurityError):
        renderer.render(template="warm-up/1-welcome", subject=expression, context=_context(FULL))
    # ... and in a template file a marketer wrote.
    (tmp_path / "evil.html").write_text(f"<p>{expression}</p>\n")
    (tmp_path / "evil.txt").write_text(f"{expression}\n")
    with pytest.raises(SecurityError):
        renderer.render(template="evil", subject="Hello", context=_context(FULL))


def test_workspace_template_overrides_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "warm-up").mkdir()
    (tmp_path / "warm-up" / "1-welcome.html").write_text(
        '{% extends "base.html" %}{% block content %}<p>Our own welcome, {{ lead.first_name }}!</p>{% endblock %}'
    )
    (tmp_path / "warm-up" / "1-welcome.txt").write_text(
        '{% extends "base.txt" %}{% block content %}Our own welcome, {{ lead.first_name }}!{% endblock %}'
    )
    renderer = TemplateRenderer(tmp_path)
    email = renderer.render(template="warm-up/1-welcome", subject="Welcome", context=_context(FULL))
    assert ">Our own welcome, Anna!</p>" in email.html
    assert email.text.startswith("Our own welcome, Anna!")
    assert "three signs" not in email.html.lower() and "Three signs" not in email.text
    # The shipped base layout (footer with unsubscribe link) still wraps the override.
    assert UNSUBSCRIBE in email.html and UNSUBSCRIBE in email.text
    # Steps the workspace did not override still come from the shipped set.
    demo = renderer.render(template="warm-up/3-demo", subject="Demo", context=_context(FULL))
    assert "Book a demo" in demo.html


def test_workspace_base_layout_overrides_the_shipped_footer(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text(
        "{% block content %}{% endblock %}\n-- \nOur footer. Leave: {{ unsubscribe_url }}\n"
    )
    email = TemplateRenderer(tmp_path).render(template="warm-up/3-demo", subject="Demo", context=_context(FULL))
    assert email.text.rstrip().endswith(f"Our footer. Leave: {UNSUBSCRIBE}")
    assert "Best regards" not in email.text
    assert "Best regards" in email.html  # base.html was not overridden
