"""Tracked links: what the HTML part of a sent email carries, and what a click token can and cannot say."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime
from email.message import EmailMessage
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import Engine

from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from leadflow.nurture import links, tokens
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.steps import queue_due_steps
from leadflow.nurture.tokens import BadToken
from tests import factories as make
from tests.sending import send_due

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
KEY = "links-test-secret"
BASE = "https://mail.acme.example"
SIGNER = LinkSigner(secret_key=KEY, public_base_url=BASE)
NOW = datetime(2026, 10, 1, 9, 0)

WELCOME = """{% extends "base.html" %}
{% block content %}
<p>Hi {{ lead.first_name }}, read <a href="https://acme.example/guide?utm_source=mail&amp;lead=1#part-2">the guide</a>,
see <a class="btn" title="pricing > plans" href='http://acme.example/pricing'>pricing</a>,
<a href="mailto:team@acme.example">write to us</a>, <a href="tel:+31201234567">call</a>,
<a href="#top">back to top</a> or <a data-href="https://x.example" href="/relative">a relative link</a>.</p>
{% endblock %}
"""


def _hrefs(html: str) -> list[str]:
    return [
        unescape(m.group(1) or m.group(2)) for m in re.finditer(r"""(?<![\w-])href=(?:"([^"]*)"|'([^']*)')""", html)
    ]


def _target(url: str) -> str | None:
    """Where a tracked click URL leads, read back as the web endpoint does."""
    assert url.startswith(f"{BASE}/c/")
    return links.read_token(KEY, links.CLICK, url.removeprefix(f"{BASE}/c/")).url


def test_web_links_become_signed_clicks_and_everything_else_is_left_alone() -> None:
    body = WELCOME.split("{% block content %}")[1].split("{% endblock %}")[0]
    unsubscribe = SIGNER.unsubscribe_url(7, "warm-up")
    body += f'<a href="{unsubscribe}">Unsubscribe</a>'
    rewritten = SIGNER.track(body, lead_id=7, sequence="warm-up", step=0)

    hrefs = _hrefs(rewritten)
    assert [_target(h) for h in hrefs[:2]] == [
        "https://acme.example/guide?utm_source=mail&lead=1#part-2",
        "http://acme.example/pricing",
    ]
    assert hrefs[2:] == ["mailto:team@acme.example", "tel:+31201234567", "#top", "/relative", unsubscribe]
    assert 'data-href="https://x.example"' in rewritten
    assert 'class="btn" title="pricing > plans"' in rewritten and ">the guide</a>" in rewritten
    assert "<img" not in rewritten  # no open pixel unless asked for


def test_click_token_names_lead_sequence_step_and_url_and_nothing_else() -> None:
    url = SIGNER.click_url(42, "warm-up", 2, "https://acme.example/demo")
    token = url.removeprefix(f"{BASE}/c/")
    assert links.read_token(KEY, links.CLICK, token) == links.SignedLink(42, "warm-up", 2, "https://acme.example/demo")
    assert "@" not in tokens.verify(KEY, links.CLICK, token)[3]  # no email inside, just the id

    body, mac = token.split(".")
    forged = tokens.sign(KEY, links.CLICK, 42, "warm-up", 2, "https://evil.example/").split(".")[0]
    with pytest.raises(BadToken):
        links.read_token(KEY, links.CLICK, f"{forged}.{mac}")  # another URL under the same signature
    with pytest.raises(BadToken):
        links.read_token(KEY, links.UNSUBSCRIBE, token)  # a click token is no unsubscribe token
    with pytest.raises(BadToken):
        links.read_token("another-workspace", links.CLICK, token)


@pytest.mark.parametrize(
    "fields",
    [
        (42, "warm-up", 2, "javascript:alert(1)"),
        (42, "warm-up", 2, "//evil.example/"),
        (42, "warm-up", 2, "https://"),
        ("x", "warm-up", 2, "https://acme.example/"),
        (42, "warm-up", "two", "https://acme.example/"),
        (42, "warm-up", 2),
    ],
)
def test_a_correctly_signed_token_with_unusable_fields_is_still_refused(fields: tuple[object, ...]) -> None:
    with pytest.raises(BadToken):
        links.read_token(KEY, links.CLICK, tokens.sign(KEY, links.CLICK, *fields))  # type: ignore[arg-type]


def test_open_pixel_goes_just_before_the_end_of_the_body() -> None:
    signer = LinkSigner(secret_key=KEY, public_base_url=BASE, track_opens=True)
    html = signer.track("<html><body><p>Hi</p></body></html>", lead_id=3, sequence="warm-up", step=1)
    pixel = re.search(r'<img src="([^"]+)" width="1" height="1" alt=""[^>]*></body>', html)
    assert pixel is not None
    token = pixel.group(1).removeprefix(f"{BASE}/o/").removesuffix(".gif")
    assert links.read_token(KEY, links.OPEN, token) == links.SignedLink(3, "warm-up", 1)


def test_sent_email_carries_tracked_links_in_html_and_plain_links_in_text(engine: Engine, tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    templates = tmp_path / "templates"
    (templates / "warm-up").mkdir(parents=True)
    (templates / "warm-up" / "1-welcome.html").write_text(WELCOME)
    (templates / "warm-up" / "1-welcome.txt").write_text(
        '{% extends "base.txt" %}{% block content %}The guide: https://acme.example/guide{% endblock %}'
    )
    with session_scope(engine) as session:
        lead = make.lead("anna@example.com", first_name="Anna", stage=Stage.prospect)
        session.add(lead)
        session.flush()
        lead_id = lead.id
        enroll(session=session, config=config, now=NOW)
        queue_due_steps(session=session, config=config, now=NOW)
    report = send_due(engine, config, links=SIGNER, folder=tmp_path, now=NOW)
    assert report.sent == 1

    (path,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    hrefs = _hrefs(html)
    assert _target(hrefs[0]) == "https://acme.example/guide?utm_source=mail&lead=1#part-2"
    assert hrefs[0] == SIGNER.click_url(
        lead_id, "warm-up", 0, "https://acme.example/guide?utm_source=mail&lead=1#part-2"
    )  # type: ignore[arg-type]
    unsubscribe = SIGNER.unsubscribe_url(lead_id, "warm-up")  # type: ignore[arg-type]
    assert unsubscribe in hrefs and message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert "https://acme.example/guide" in text and "/c/" not in text
