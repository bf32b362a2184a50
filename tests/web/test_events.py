"""POST /events: Standard Webhooks signatures, replays, size limits and validation; a bad request writes nothing."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook

from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.models import Activity, Lead
from leadflow.web.app import create_app
from leadflow.web.events import MAX_BODY_BYTES, MAX_RECORDS
from tests.factories import raw_event
from tests.web.conftest import EXAMPLE, INBOUND_SECRET, Site, web_settings

pytestmark = pytest.mark.anyio

FORM = {
    "email": "Anna.Jansen@Acme-Logistics.nl ",
    "type": "demo_request",
    "at": "2026-09-30T14:05:00Z",
    "target": "/demo",
    "properties": {"form": "book-a-demo", "utm_source": "linkedin"},
    "lead": {"first_name": "Anna", "company": "Acme Logistics", "country": "NL"},
}


def signed(
    body: bytes, msg_id: str = "msg_2f9a", *, at: datetime | None = None, secret: str = INBOUND_SECRET
) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them."""
    when = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


async def _post(site: Site, payload: Any, msg_id: str = "msg_2f9a", **kwargs: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await site.client.post("/events", content=body, headers=signed(body, msg_id, **kwargs))


def _stored(site: Site) -> list[tuple[str, str, str, str | None]]:
    with Session(site.engine) as session:
        rows = session.execute(
            select(Lead.email, Activity.type, Activity.source_id, Activity.target)
            .join(Lead, Lead.id == Activity.lead_id)
            .where(Activity.source == "web")
            .order_by(Activity.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _nothing_written(site: Site) -> None:
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(Activity)) == 0
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


async def test_a_signed_form_submission_is_stored_once(site: Site) -> None:
    response = await _post(site, FORM)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "stored": 1, "webhook_id": "msg_2f9a"}
    assert _stored(site) == [("anna.jansen@acme-logistics.nl", "demo_request", "msg_2f9a", "/demo")]
    with Session(site.engine) as session:
        lead = session.scalars(select(Lead)).one()
        assert (lead.first_name, lead.company, lead.country) == ("Anna", "Acme Logistics", "NL")

    # The sender retries (same webhook-id, signed again later): acknowledged, not stored twice.
    replay = await _post(site, FORM, at=datetime.now(UTC) + timedelta(seconds=30))
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert len(_stored(site)) == 1


async def test_a_list_of_records_is_stored_under_indexed_ids(site: Site) -> None:
    events = [raw_event(n, id="ignored") for n in range(3)]
    response = await _post(site, events, "msg_batch")
    assert response.status_code == 202 and response.json()["stored"] == 3
    assert [row[2] for row in _stored(site)] == ["msg_batch:0", "msg_batch:1", "msg_batch:2"]
    assert (await _post(site, events, "msg_batch")).json() == {
        "status": "duplicate",
        "stored": 0,
        "webhook_id": "msg_batch",
    }


async def test_bad_signatures_are_refused(site: Site) -> None:
    body = json.dumps(FORM).encode()
    headers = signed(body)
    other_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    cases = {
        "other secret": (body, signed(body, secret=other_secret)),
        "body changed after signing": (body.replace(b"demo_request", b"quote_request"), headers),
        "id changed after signing": (body, {**headers, "webhook-id": "msg_other"}),
        "garbled signature": (body, {**headers, "webhook-signature": "nonsense"}),
        "no signature": (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
        "no id": (body, {k: v for k, v in headers.items() if k != "webhook-id"}),
    }
    for name, (content, sent) in cases.items():
        response = await site.client.post("/events", content=content, headers=sent)
        assert response.status_code == 401, name
        assert response.json()["error"], name
    _nothing_written(site)


@pytest.mark.parametrize(
    ("offset", "message"),
    [(-timedelta(minutes=6), "5 minutes in the past"), (timedelta(minutes=6), "5 minutes in the future")],
)
async def test_timestamps_outside_five_minutes_are_refused(site: Site, offset: timedelta, message: str) -> None:
    response = await _post(site, FORM, at=datetime.now(UTC) + offset)
    assert response.status_code == 401 and message in response.json()["error"]
    # Four minutes either way is inside the window.
    inside = await _post(site, FORM, at=datetime.now(UTC) - timedelta(minutes=4))
    assert inside.status_code == 202
    assert len(_stored(site)) == 1


async def test_oversized_bodies_are_refused_before_anything_is_read_into_the_database(site: Site) -> None:
    big = [raw_event(n, properties={"pad": "x" * 1000}) for n in range(70)]
    body = json.dumps(big).encode()
    assert len(body) > MAX_BODY_BYTES
    response = await site.client.post("/events", content=body, headers=signed(body))
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit holds while reading
        for _ in range(20):
            yield b"x" * 8192

    response = await site.client.post("/events", content=chunks(), headers=signed(body))
    assert response.status_code == 413

    too_many = [raw_event(n) for n in range(MAX_RECORDS + 1)]
    response = await _post(site, too_many)
    assert response.status_code == 413 and str(MAX_RECORDS) in response.json()["error"]
    _nothing_written(site)


@pytest.mark.parametrize(
    ("payload", "field", "index"),
    [
        ({**FORM, "email": "not-an-address"}, "email", None),
        ({**FORM, "type": "telepathy"}, "type", None),
        ({**FORM, "at": "yesterday"}, "at", None),
        ({**FORM, "at": "2027-01-01T00:00:00Z"}, "at", None),
        ({**FORM, "properties": ["a"]}, "properties", None),
        ({**FORM, "lead": {"country": "Netherlands"}}, "lead.country", None),
        ([raw_event(1), {**raw_event(2), "email": ""}, raw_event(3)], "email", 1),
    ],
)
async def test_invalid_records_name_the_field_and_nothing_is_stored(
    site: Site, payload: Any, field: str, index: int | None
) -> None:
    response = await _post(site, payload)
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == field and error["error"]
    assert error.get("index") == index
    _nothing_written(site)


async def test_bodies_that_are_not_records(site: Site) -> None:
    for body, status in (
        (b"{not json", 400),
        (b"[]", 422),
        (b'"page_view"', 422),
        (b"[1, 2]", 422),
        (b"\xff\xfe", 400),
    ):
        headers = signed(body if body.isascii() else b"x")  # a body that is not UTF-8 cannot be signed as text
        response = await site.client.post("/events", content=body, headers=headers)
        assert response.status_code == status, body
    _nothing_written(site)


async def test_inbound_events_are_off_without_a_secret(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(web_settings(tmp_path, sqlite_url, inbound_secret=None), config=load_config(EXAMPLE))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://x.example") as client:
        body = json.dumps(FORM).encode()
        response = await client.post("/events", content=body, headers=signed(body))
    app.state.web.engine.dispose()
    assert response.status_code == 503 and "LEADFLOW_INBOUND_SECRET" in response.json()["error"]
