"""Unsubscribe links: one-click POST per RFC 8058, the confirmation page, and tokens that do not work."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import (
    Activity,
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Suppression,
)
from leadflow.nurture import tokens
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.steps import queue_due_steps
from tests.sending import send_due
from tests.web.conftest import BASE, KEY, Site

pytestmark = pytest.mark.anyio

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _state(site: Site, lead_id: int) -> tuple[list[tuple[str, str]], bool, list[str], str]:
    """(suppression log, unsubscribed?, activity types, enrollment status) of one lead."""
    with Session(site.engine) as session:
        log = session.execute(select(Suppression.scope, Suppression.source).where(Suppression.lead_id == lead_id))
        lead = session.get(Lead, lead_id)
        assert lead is not None
        kinds = session.scalars(select(Activity.type).where(Activity.lead_id == lead_id)).all()
        status = session.scalar(select(NurtureEnrollment.status).where(NurtureEnrollment.lead_id == lead_id))
        return [tuple(row) for row in log], lead.unsubscribed_at is not None, list(kinds), status  # type: ignore[misc]


UNTOUCHED = ([], False, [], EnrollmentStatus.active)


async def test_get_shows_a_confirmation_page_and_changes_nothing(site: Site) -> None:
    lead_id = site.add_lead("anna.jansen@acme-logistics.nl")
    response = await site.client.get(site.path(site.links.unsubscribe_url(lead_id, "warm-up")))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="en">' in page and 'name="viewport"' in page
    assert "<h1>Unsubscribe</h1>" in page and "Acme Growth Team" in page
    assert "a•••@acme-logistics.nl" in page and "anna.jansen" not in page  # recognisable, not harvestable
    assert '<form method="post">' in page and '<button type="submit">Unsubscribe</button>' in page
    choices = re.findall(
        r'<label class="choice"><input type="radio" name="scope" value="(\w+)"[^>]*>([^<]+)</label>', page
    )
    assert [(value, text.strip()) for value, text in choices] == [
        ("all", "All marketing email from Acme Growth Team"),
        ("sequence", "Only this series of emails"),
    ]
    assert "<script" not in page and "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert _state(site, lead_id) == UNTOUCHED


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
async def test_one_click_post_unsubscribes_at_once_and_repeats_are_harmless(site: Site, encoding: str) -> None:
    lead_id = site.add_lead("anna@example.com")
    other = site.add_lead("bo@example.com")
    url = site.path(site.links.unsubscribe_url(lead_id, "warm-up"))
    body = {"data": ONE_CLICK} if encoding == "urlencoded" else {"files": {"List-Unsubscribe": (None, "One-Click")}}

    for _ in range(3):  # a mailbox provider may retry
        response = await site.client.post(url, **body)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert "location" not in response.headers and "set-cookie" not in response.headers
        assert "<h1>You are unsubscribed</h1>" in response.text
        site.clock.advance(minutes=1)

    assert _state(site, lead_id) == ([("all", "web")], True, ["unsubscribe"], EnrollmentStatus.exited)
    assert _state(site, other) == UNTOUCHED
    # The page now says so, and offers nothing more to do.
    page = (await site.client.get(url)).text
    assert "<h1>You are unsubscribed</h1>" in page and "<form" not in page


async def test_page_choice_this_sequence_only(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    url = site.path(site.links.unsubscribe_url(lead_id, "warm-up"))

    response = await site.client.post(url, data={"scope": "sequence"})
    assert response.status_code == 200
    assert "no more emails from this series" in response.text
    assert _state(site, lead_id) == ([("warm-up", "web")], False, ["unsubscribe"], EnrollmentStatus.exited)

    page = (await site.client.get(url)).text
    assert "Only this series of emails (already stopped)" in page and 'value="all" checked' in page
    response = await site.client.post(url, data={"scope": "all"})
    assert "will get no more marketing email from Acme Growth Team" in response.text
    log, unsubscribed, kinds, _ = _state(site, lead_id)
    assert sorted(log) == [("all", "web"), ("warm-up", "web")] and unsubscribed and kinds == ["unsubscribe"] * 2


async def test_the_next_send_honours_the_unsubscribe(site: Site, tmp_path: Path) -> None:
    """A step queued before the click is not sent after it."""
    gone = site.add_lead("gone@example.com")
    stays = site.add_lead("stays@example.com")
    with session_scope(site.engine) as session:
        assert queue_due_steps(session=session, config=site.config, now=site.clock()) == 2

    assert (await site.client.post(site.path(site.links.unsubscribe_url(gone, "warm-up")), data=ONE_CLICK)).is_success

    report = send_due(site.engine, site.config, links=site.links, folder=tmp_path, now=site.clock())
    assert report.sent == 1 and report.skipped == Counter({"unsubscribed": 1})
    with Session(site.engine) as session:
        status = dict(session.execute(select(EmailOutbox.lead_id, EmailOutbox.status)).all())
    assert status == {gone: OutboxStatus.skipped, stays: OutboxStatus.sent}


async def test_a_post_that_says_nothing_changes_nothing(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    url = site.path(site.links.unsubscribe_url(lead_id, "warm-up"))
    for body in ({}, {"List-Unsubscribe": "Yes"}, {"scope": "everything"}):
        response = await site.client.post(url, data=body)
        assert response.status_code == 400 and "Nothing was changed" in response.text
    response = await site.client.post(url, content=b"List-Unsubscribe=One-Click&" + b"x" * 5000)
    assert response.status_code == 413
    assert _state(site, lead_id) == UNTOUCHED


def _tampered(token: str) -> list[str]:
    body, mac = token.split(".")
    return [
        f"{tokens.sign(KEY, 'unsubscribe', 1, 'warm-up').split('.')[0]}.{mac}",  # another lead, same signature
        f"{body}.{mac[:-2]}",  # cut short by a mail program
        f"{body}.{'A' * len(mac)}",
        tokens.sign("a guessed key", "unsubscribe", 2, "warm-up"),  # forged
        tokens.sign(KEY, "click", 2, "warm-up"),  # another purpose
        "2",  # enumerating ids
        "not-a-token",
    ]


async def test_tampered_forged_or_enumerated_tokens_get_a_4xx_and_change_nothing(site: Site) -> None:
    site.add_lead("first@example.com")
    lead_id = site.add_lead("anna@example.com")
    token = site.links.unsubscribe_url(lead_id, "warm-up").rsplit("/", 1)[1]
    for bad in _tampered(token):
        got = await site.client.get(f"/u/{bad}")
        posted = await site.client.post(f"/u/{bad}", data=ONE_CLICK)
        assert (got.status_code, posted.status_code) == (400, 400), bad
        assert "This link does not work" in posted.text
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0
        assert session.scalar(select(func.count()).where(Lead.unsubscribed_at.is_not(None))) == 0


async def test_a_valid_token_for_a_lead_that_is_gone(site: Site) -> None:
    url = site.path(LinkSigner(secret_key=KEY, public_base_url=BASE).unsubscribe_url(999, "warm-up"))
    assert (await site.client.get(url)).status_code == 404
    assert (await site.client.post(url, data=ONE_CLICK)).status_code == 404
