"""Tracked clicks and opens: recorded as activity that scoring counts, and no open redirect."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Activity, Lead
from leadflow.leads.requalify.run import requalify_shard
from leadflow.nurture import tokens
from tests.web.conftest import KEY, Site

pytestmark = pytest.mark.anyio

DEMO = "https://acme.example/demo?utm_campaign=warm-up&x=1#book"


def _activity(site: Site) -> list[tuple[int, str, str, str | None]]:
    with Session(site.engine) as session:
        rows = session.execute(
            select(Activity.lead_id, Activity.type, Activity.source, Activity.target).order_by(Activity.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _engagement(site: Site, lead_id: int) -> float:
    with session_scope(site.engine) as session:
        requalify_shard(session=session, config=site.config, lo=lead_id, hi=lead_id, now=site.clock())
    with Session(site.engine) as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        return lead.engagement_score


async def test_click_redirects_to_the_signed_url_and_counts_in_scoring(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    before = _engagement(site, lead_id)
    url = site.path(site.links.click_url(lead_id, "warm-up", 2, DEMO))

    response = await site.client.get(url)
    assert response.status_code == 302
    assert response.headers["location"] == DEMO
    assert response.headers["cache-control"] == "no-store"
    assert _activity(site) == [(lead_id, "email_click", "web", DEMO)]
    assert _engagement(site, lead_id) == before + 3  # the example's "Email link clicked" rule

    # A double click counts once; a click a minute later counts again.
    await site.client.get(url)
    site.clock.advance(minutes=1)
    await site.client.get(url)
    assert len(_activity(site)) == 2


async def test_link_scanners_probing_with_head_are_not_counted(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    response = await site.client.head(site.path(site.links.click_url(lead_id, "warm-up", 0, DEMO)))
    assert response.status_code == 302 and response.headers["location"] == DEMO
    assert _activity(site) == []


async def test_no_open_redirect(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    good = site.links.click_url(lead_id, "warm-up", 0, DEMO).rsplit("/", 1)[1]
    body, mac = good.split(".")
    evil = "https://evil.example/login"
    attempts = [
        f"/c/{tokens.sign(KEY, 'click', lead_id, 'warm-up', 0, evil).split('.')[0]}.{mac}",  # swapped URL, old MAC
        f"/c/{tokens.sign('guessed key', 'click', lead_id, 'warm-up', 0, evil)}",
        f"/c/{site.links.unsubscribe_url(lead_id, 'warm-up').rsplit('/', 1)[1]}",  # another purpose
        f"/c/{tokens.sign(KEY, 'click', lead_id, 'warm-up', 0, 'javascript:alert(document.cookie)')}",
        f"/c/{tokens.sign(KEY, 'click', lead_id, 'warm-up', 0, '//evil.example/')}",
        f"/c/{body}.",
        "/c/evil.example",
    ]
    for path in attempts:
        response = await site.client.get(path)
        assert response.status_code == 400, path
        assert "location" not in response.headers
    for path in (f"/c/{good}/https://evil.example", "/c/https:%2F%2Fevil.example", "/c//evil.example", "/c/"):
        response = await site.client.get(path)
        assert response.status_code == 404 and "location" not in response.headers, path
    # Query parameters cannot steer the redirect either.
    response = await site.client.get(f"/c/{good}", params={"url": evil, "next": evil, "redirect": evil})
    assert response.headers["location"] == DEMO
    assert [kind for _, kind, _, _ in _activity(site)] == ["email_click"]


async def test_open_pixel_records_an_open(site: Site) -> None:
    lead_id = site.add_lead("anna@example.com")
    response = await site.client.get(site.path(site.links.open_url(lead_id, "warm-up", 1)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif" and response.content.startswith(b"GIF89a")
    assert "no-store" in response.headers["cache-control"]
    assert _activity(site) == [(lead_id, "email_open", "web", "warm-up")]

    click_token = site.links.click_url(lead_id, "warm-up", 1, DEMO).rsplit("/", 1)[1]
    assert (await site.client.get(f"/o/{click_token}.gif")).status_code == 400
    assert len(_activity(site)) == 1


async def test_a_click_for_a_lead_that_is_gone_still_takes_the_reader_there(site: Site) -> None:
    response = await site.client.get(site.path(site.links.click_url(999, "warm-up", 0, DEMO)))
    assert response.status_code == 302 and response.headers["location"] == DEMO
    assert _activity(site) == []
