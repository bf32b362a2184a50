"""CSS inlining (once per template), the footer check, and `leadflow preview`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import leadflow.nurture.render
from leadflow.cli.main import app
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.nurture.checks import check_templates
from leadflow.nurture.render import TemplateRenderer, inline_css
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
SENDER = {"from_name": "Acme", "from_email": "hello@acme.example", "postal_address": "Acme B.V., Keizersgracht 123"}
runner = CliRunner()


def _context(first_name: str | None = "Anna") -> dict[str, object]:
    lead = {"email": "a@example.com", "first_name": first_name, "company": None, "industry": None, "title": None}
    return {"lead": lead, "sender": SENDER, "unsubscribe_url": "https://l.example/u/t"}


def test_the_stylesheet_lands_in_style_attributes_and_jinja_survives(tmp_path: Path) -> None:
    (tmp_path / "email.css").write_text("p { color: #123456; } a.cta { font-weight: bold; }")
    (tmp_path / "note.html").write_text(
        '{% extends "base.html" %}\n{% block content %}\n'
        "<p class=\"{{ 'vip' if lead.first_name else 'anon' }}\">Hi {{ lead.first_name or \"there\" }},</p>\n"
        "<table><tr>{% for n in [1, 2] %}<td>{{ n }}</td>{% endfor %}</tr></table>\n"
        '<a class="cta" href="https://acme.example/?who={{ lead.email }}">Go</a>\n'
        '<a href="https://acme.example/" {% if 2 > 1 %}title="for {{ lead.first_name }}"{% endif %}>Home</a>\n'
        "{% endblock %}\n"
    )
    (tmp_path / "note.txt").write_text('{% extends "base.txt" %}{% block content %}Hi{% endblock %}')
    email = TemplateRenderer(tmp_path).render(template="note", subject="Hello", context=_context())
    assert '<p class="vip" style="color: #123456;">Hi Anna,</p>' in email.html
    assert "<td>1</td><td>2</td>" in email.html  # a loop inside a table stays inside it
    assert 'href="https://acme.example/?who=a@example.com" style="font-weight: bold;"' in email.html
    # The base layout got the workspace stylesheet too (its paragraphs), and keeps its own inline styles.
    assert '<p style="color: #123456;margin-top: 28px">Best regards,' in email.html
    assert '<a href="https://acme.example/" title="for Anna" >Home</a>' in email.html  # Jinja inside a tag
    assert "<title>Hello</title>" in email.html


def test_css_is_inlined_once_per_template_not_per_send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(source: str, css: str) -> str:
        calls.append(1)
        return inline_css(source, css)

    monkeypatch.setattr(leadflow.nurture.render, "inline_css", counting)
    renderer = TemplateRenderer(tmp_path)
    for name in ("Anna", "Bo", None, "Chris") * 25:
        renderer.render(template="warm-up/1-welcome", subject="Hi", context=_context(name))
    assert len(calls) == 2  # warm-up/1-welcome.html and base.html; the .txt parts have no CSS


def test_check_refuses_a_layout_without_unsubscribe_link_or_address(tmp_path: Path) -> None:
    shipped = Path(leadflow.nurture.render.SHIPPED_TEMPLATES / "base.html").read_text()
    (tmp_path / "base.html").write_text(
        shipped.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "Unsubscribe")
    )
    (tmp_path / "base.txt").write_text("{% block content %}{% endblock %}\nLeave: {{ unsubscribe_url }}\n")
    problems = check_templates(load_config(EXAMPLE), tmp_path)
    assert len(problems) == 9  # every step of the example uses the layout
    assert "the HTML part has no unsubscribe link" in problems[0]
    assert "the text part does not show {{ sender.postal_address }}" in problems[0]


def _workspace(tmp_path: Path) -> Path:
    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'leadflow.db'}")
    upgrade(engine)
    with session_scope(engine) as session:
        session.add(make.lead("bo@fish.example", first_name="<b>Bo</b>", company="Fish & Chips"))
    engine.dispose()
    return tmp_path


def test_preview_shows_subject_text_and_html_for_a_stored_lead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_workspace(tmp_path))
    result = runner.invoke(app, ["preview", "warm-up", "case-study", "--lead", "Bo@Fish.example"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "warm-up step 2 (case-study, template warm-up/2-case-study)" in out
    assert "To: bo@fish.example" in out
    assert "Subject: How Fish & Chips could cut follow-up time in half" in out
    assert "Hi <b>Bo</b>," in out.split("----- text part -----")[1].split("----- HTML part")[0]
    html = out.split("----- HTML part -----")[1]
    assert "Hi &lt;b&gt;Bo&lt;/b&gt;," in html and "If Fish &amp; Chips gets more leads" in html
    assert "/u/PREVIEW" in html  # never the lead's real unsubscribe link

    page = tmp_path / "preview.html"
    by_number = runner.invoke(app, ["preview", "warm-up", "2", "--lead", "bo@fish.example", "--html", str(page)])
    assert by_number.exit_code == 0, by_number.output
    assert page.read_text().startswith("<!DOCTYPE html>") and "Fish &amp; Chips" in page.read_text()
    assert f"HTML part written to {page}" in by_number.output.replace("\n", "")


def test_preview_names_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_workspace(tmp_path))
    (tmp_path / "templates" / "warm-up" / "1-welcome.txt").write_text(
        '{% extends "base.txt" %}\n{% block content %}\nHi {{ lead.frist_name }}\n{% endblock %}\n'
    )
    for args, message in [
        (["nope", "1"], "no sequence 'nope' (sequences: warm-up, recycled, re-engage)"),
        (["warm-up", "9"], "warm-up has no step '9'"),
        (["warm-up", "1", "--lead", "who@x.example"], "no lead with email 'who@x.example'"),
        (["warm-up", "welcome"], "templates/warm-up/1-welcome.txt:3: 'dict object' has no attribute 'frist_name'"),
    ]:
        result = runner.invoke(app, ["preview", *args])
        assert result.exit_code == 2 and message in result.output.replace("\n", ""), result.output


def test_check_warns_when_a_sequence_looks_at_opens_that_are_not_tracked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "activity.jsonl").write_text("")  # the source leadflow.yaml names
    config = tmp_path / "leadflow.yaml"
    config.write_text(config.read_text().replace("- if: clicked ", "- if: opened "))
    monkeypatch.delenv("LEADFLOW_TRACK_OPENS", raising=False)
    warned = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert warned.exit_code == 0, warned.output  # a warning, not an error
    assert "warm-up step 3 (checklist) looks at opens, but LEADFLOW_TRACK_OPENS is off" in warned.output.replace(
        "\n", " "
    )
    monkeypatch.setenv("LEADFLOW_TRACK_OPENS", "true")
    quiet = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert quiet.exit_code == 0 and "LEADFLOW_TRACK_OPENS" not in quiet.output
