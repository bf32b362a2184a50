"""Handoff sinks against a real HTTP server on loopback that verifies Standard Webhooks signatures."""

from __future__ import annotations

import json
import socket
import time
import traceback
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.connectors.destinations import open_sink
from leadflow.connectors.errors import DestinationGoneError, FatalHandoffError, HandoffError, RetriableHandoffError
from leadflow.connectors.handoff import FileInbox, WebhookSink, sink_from_url
from leadflow.connectors.handoff_payload import HandoffPayload
from leadflow.connectors.status import parse_retry_after
from leadflow.leads.config.handoff import WebhookDestination
from tests.connectors.handoff_payloads import document, payload
from tests.peers import SECRET, SLOW, ServerState


@pytest.fixture
def server(webhook_receiver: tuple[ServerState, str]) -> tuple[ServerState, str]:
    """The shared verifying receiver, with a token in the URL (it must never show up in reprs)."""
    state, url = webhook_receiver
    return state, f"{url}?token=abc"


def _sink(url: str, **kwargs: Any) -> WebhookSink:
    kwargs.setdefault("allow_private", True)
    return WebhookSink(url, SECRET, **kwargs)


def _no_secrets(exc: BaseException, *extra: str) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    for needle in (SECRET, SECRET.removeprefix("whsec_"), *extra):
        assert needle not in text


PAYLOAD = document("zoë@example.com", first_name="Zoë")  # as the outbox row stores it
SENT = HandoffPayload.of(PAYLOAD)


def test_signed_delivery(server: tuple[ServerState, str]) -> None:
    state, url = server
    with _sink(url) as sink:
        receipt = sink.deliver(idempotency_key="handoff:42:sql:1", payload=SENT)
    assert receipt == "http 200"
    [req] = state.requests
    assert req.verified == PAYLOAD
    assert req.headers["webhook-id"] == "handoff:42:sql:1"
    assert req.headers["content-type"] == "application/json"
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 30
    assert req.headers["webhook-signature"].startswith("v1,")
    assert json.loads(req.body.decode("utf-8")) == PAYLOAD
    assert SECRET not in repr(sink) and "token=abc" not in repr(sink)


def test_status_mapping(server: tuple[ServerState, str]) -> None:
    state, url = server
    state.script.extend([(200, {}), (500, {}), (429, {"Retry-After": "7"}), (410, {}), (400, {}), (503, {})])
    with _sink(url) as sink:
        assert sink.deliver(idempotency_key="k1", payload=SENT) == "http 200"

        with pytest.raises(RetriableHandoffError) as server_error:
            sink.deliver(idempotency_key="k1", payload=SENT)
        assert server_error.value.status == 500 and server_error.value.retry_after is None

        with pytest.raises(RetriableHandoffError) as throttled:
            sink.deliver(idempotency_key="k1", payload=SENT)
        assert throttled.value.status == 429 and throttled.value.retry_after == 7

        with pytest.raises(DestinationGoneError) as gone:
            sink.deliver(idempotency_key="k1", payload=SENT)
        assert gone.value.status == 410

        with pytest.raises(FatalHandoffError) as rejected:
            sink.deliver(idempotency_key="k1", payload=SENT)
        assert not isinstance(rejected.value, DestinationGoneError)
        assert rejected.value.status == 400

        with pytest.raises(RetriableHandoffError):
            sink.deliver(idempotency_key="k1", payload=SENT)

    assert all(r.verified == PAYLOAD for r in state.requests)
    assert {r.headers["webhook-id"] for r in state.requests} == {"k1"}
    signatures = [r.headers["webhook-signature"] for r in state.requests]
    for info in (server_error, throttled, gone, rejected):
        assert "127.0.0.1" in str(info.value)
        assert str(info.value.status) in str(info.value)
        _no_secrets(info.value, *signatures, *(s.split(",", 1)[1] for s in signatures))


def test_retry_after_http_date(server: tuple[ServerState, str]) -> None:
    state, url = server
    when = datetime.now(UTC) + timedelta(seconds=120)
    state.script.append((503, {"Retry-After": format_datetime(when, usegmt=True)}))
    with _sink(url) as sink, pytest.raises(RetriableHandoffError) as info:
        sink.deliver(idempotency_key="k", payload=SENT)
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120


def test_parse_retry_after_forms() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 0 ") == 0
    assert parse_retry_after("Wed, 01 May 2024 12:01:30 GMT", now=now) == 90
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0
    for junk in (None, "", "soon", "-5", "nan", "inf"):
        assert parse_retry_after(junk) is None


def test_timeout_is_retriable(server: tuple[ServerState, str]) -> None:
    state, url = server
    state.script.append(SLOW)
    started = time.monotonic()
    with _sink(url, timeout=0.3) as sink, pytest.raises(RetriableHandoffError) as info:
        sink.deliver(idempotency_key="slow-1", payload=SENT)
    assert time.monotonic() - started < 3
    assert "timed out" in str(info.value)
    _no_secrets(info.value)


def test_a_destination_sets_its_own_timeout(server: tuple[ServerState, str], tmp_path: Path) -> None:
    """`timeout_seconds` in leadflow.yaml reaches the sink: a slow receiver is given up on after it, to retry later."""
    state, url = server
    spec = WebhookDestination(name="slow-crm", kind="webhook", url=url, timeout_seconds=0.3)
    state.script.append(SLOW)
    started = time.monotonic()
    with (
        open_sink(
            spec, base_dir=tmp_path, secret=lambda *_: None, ledger=None, webhook_secret=SECRET, allow_private=True
        ) as sink,  # type: ignore[arg-type]
        pytest.raises(RetriableHandoffError, match=r"timed out after 0.3s"),
    ):
        sink.deliver(idempotency_key="slow-2", payload=SENT)
    assert time.monotonic() - started < 3
    assert WebhookDestination(name="x", kind="webhook", url=url).timeout_seconds == 10.0  # the default


def test_connection_refused_is_retriable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _sink(f"http://127.0.0.1:{port}/x") as sink, pytest.raises(RetriableHandoffError):
        sink.deliver(idempotency_key="k", payload=SENT)


def test_private_destinations_refused_unless_allowed(server: tuple[ServerState, str]) -> None:
    state, url = server
    port = url.split(":")[2].split("/")[0]
    for target in (url, f"http://localhost:{port}/hook", f"http://[::ffff:127.0.0.1]:{port}/hook"):
        with WebhookSink(target, SECRET) as sink, pytest.raises(FatalHandoffError) as info:
            sink.deliver(idempotency_key="k", payload=SENT)
        assert "allow_private" in str(info.value)
    for address in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "100.64.0.1"):
        with WebhookSink(f"http://{address}/hook", SECRET) as sink, pytest.raises(FatalHandoffError):
            sink.deliver(idempotency_key="k", payload=SENT)
    assert state.requests == []

    with WebhookSink(url, SECRET, allow_private=True) as sink:
        assert sink.deliver(idempotency_key="k", payload=SENT) == "http 200"
    assert len(state.requests) == 1


def test_injected_client_is_used_and_left_open(server: tuple[ServerState, str]) -> None:
    state, url = server
    with httpx.Client(headers={"x-probe": "yes"}) as client:
        with _sink(url, client=client) as sink:
            sink.deliver(idempotency_key="k", payload=SENT)
        assert not client.is_closed
    assert state.requests[0].headers["x-probe"] == "yes"


def test_bad_secret_and_url_rejected_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        WebhookSink("https://hooks.example.com/x", "whsec_")
    with pytest.raises(ValueError):
        WebhookSink("ftp://hooks.example.com/x", SECRET)
    _no_secrets(info.value)


def test_file_inbox_is_idempotent(tmp_path: Path) -> None:
    inbox = FileInbox(tmp_path / "handoff-inbox")
    assert inbox.name == "file"
    first = inbox.deliver(idempotency_key="handoff-42-sql", payload=payload("v1@example.com"))
    second = inbox.deliver(idempotency_key="handoff-42-sql", payload=SENT)
    odd = inbox.deliver(idempotency_key="../lead:42/sql", payload=payload("v3@example.com"))
    assert first == second == str(tmp_path / "handoff-inbox" / "handoff-42-sql.json")
    assert Path(odd).parent == tmp_path / "handoff-inbox"
    assert sorted(p.name for p in (tmp_path / "handoff-inbox").iterdir()) == sorted([Path(first).name, Path(odd).name])
    text = Path(first).read_text(encoding="utf-8")
    assert json.loads(text) == PAYLOAD
    assert "zoë@example.com" in text and "\n  " in text  # UTF-8, pretty


def test_sink_from_url(tmp_path: Path) -> None:
    for url in ("file://handoff-inbox", "file:handoff-inbox"):
        sink = sink_from_url(url, base_dir=tmp_path, secret=None)
        assert isinstance(sink, FileInbox) and sink.directory == tmp_path / "handoff-inbox"
    absolute = sink_from_url(f"file://{tmp_path}/abs", base_dir=Path("/elsewhere"), secret=None)
    assert isinstance(absolute, FileInbox) and absolute.directory == tmp_path / "abs"

    hook = sink_from_url("https://crm.example.com/hooks/leadflow", base_dir=tmp_path, secret=SECRET)
    assert isinstance(hook, WebhookSink) and hook.name == "webhook" and not hook.allow_private
    assert (hook.host, hook.port) == ("crm.example.com", 443)
    local = sink_from_url("http://127.0.0.1:8080/x", base_dir=tmp_path, secret=SECRET, allow_private=True)
    assert isinstance(local, WebhookSink) and local.allow_private

    for secret in (None, ""):
        with pytest.raises(ValueError, match=r"^LEADFLOW_WEBHOOK_SECRET is required for webhook destinations$"):
            sink_from_url("https://crm.example.com/x", base_dir=tmp_path, secret=secret)
    with pytest.raises(ValueError, match="'s3'"):
        sink_from_url("s3://bucket/x", base_dir=tmp_path, secret=SECRET)
    assert issubclass(DestinationGoneError, FatalHandoffError) and issubclass(FatalHandoffError, HandoffError)


def test_the_webhook_sends_the_queued_document_byte_for_byte(server: tuple[ServerState, str]) -> None:
    state, url = server
    queued = {**document("zoë@example.com", company_size=12), "score": {"fit": 30, "engagement": 6.5, "total": 36.5}}
    queued = {"previous_owner": {"id": "anna"}, **queued, "reassigned_at": "2026-10-02T09:00:00Z"}
    with _sink(url) as sink:
        sink.deliver(idempotency_key="k", payload=HandoffPayload.of(queued))
    [req] = state.requests
    assert req.body == json.dumps(queued, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_a_document_without_a_lead_email_is_not_a_handoff() -> None:
    for lead in ({}, {"email": ""}, None):
        with pytest.raises(FatalHandoffError, match="^the handoff payload has no lead email$"):
            HandoffPayload.of({**document(), "lead": lead})


def test_the_owner_crm_id_is_read_from_new_and_older_payloads() -> None:
    ines = {"id": "ines", "name": "Ines", "email": None, "crm_ids": {"hubspot": "501", "pipedrive": None}}
    assert HandoffPayload.of(document(owner=ines)).owner_crm_id("hubspot", "1") == "501"
    assert HandoffPayload.of(document(owner=ines)).owner_crm_id("pipedrive", "1") == "1"  # not known there
    older = document()
    older["lead"] = {**older["lead"], "owner": ines}  # an older payload: the owner object under "lead"
    assert HandoffPayload.of(older).owner_crm_id("hubspot", None) == "501"
    assert HandoffPayload.of(document()).owner_crm_id("hubspot", None) is None
