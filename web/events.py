"""POST /events: activity from the website and forms, signed per Standard Webhooks.

The body is one activity record, or a list of up to MAX_RECORDS, in the activity file format
(docs/configuration.md, "Activity records"); each record's id is set from the `webhook-id`
(`<id>` for one record, `<id>:<index>` in a list), so a replayed delivery stores nothing twice.
A request is checked in full before anything is written: size, signature and its timestamp
(five minutes' tolerance), JSON, then every record. Any failure is a 4xx that names the problem.
"""

from __future__ import annotations

import json
import re
from typing import Any

from standardwebhooks.webhooks import WebhookVerificationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from leadflow.leads.db.engine import session_scope
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.records import ActivityRecord, RecordError
from leadflow.leads.ingest.store import store_batch
from leadflow.web.body import TooLarge, read_limited
from leadflow.web.context import WebContext, context

MAX_BODY_BYTES = 64 * 1024
MAX_RECORDS = 100
MAX_WEBHOOK_ID = 190  # leaves room for ":<index>" within the 200 characters of a source id
SOURCE = "web"

# RecordError reasons (leads.records) and the field each one is about.
_FIELDS = {
    "missing_id": "id",
    "bad_email": "email",
    "unknown_type": "type",
    "bad_timestamp": "at",
    "future_timestamp": "at",
    "bad_properties": "properties",
    "oversized_properties": "properties",
}
_SIGNATURE_PROBLEMS = {
    "Missing required headers": "webhook-id, webhook-timestamp and webhook-signature headers are required",
    "Message timestamp too old": "webhook-timestamp is more than 5 minutes in the past (a late replay?)",
    "Message timestamp too new": "webhook-timestamp is more than 5 minutes in the future; check the sender's clock",
    "Invalid Signature Headers": "webhook-timestamp is not a Unix timestamp",
}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def receive(request: Request) -> JSONResponse:
    web = context(request)
    if web.inbound is None:
        return _error(503, "inbound events are switched off: set LEADFLOW_INBOUND_SECRET (whsec_...) to accept them")
    try:
        body = await read_limited(request, MAX_BODY_BYTES)
    except TooLarge:
        return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes; send fewer records per request")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "the body must be UTF-8 JSON")
    try:
        web.inbound.verify(text, dict(request.headers), json_parse=False)
    except WebhookVerificationError as exc:
        return _error(401, _SIGNATURE_PROBLEMS.get(str(exc), "the webhook-signature does not match this body"))
    except ValueError:  # the library's own parsing of a garbled signature header
        return _error(401, "the webhook-signature header is malformed")
    webhook_id = request.headers["webhook-id"].strip()
    if len(webhook_id) > MAX_WEBHOOK_ID or not webhook_id.isprintable():
        return _error(400, f"webhook-id must be printable and at most {MAX_WEBHOOK_ID} characters")
    try:
        payload = json.loads(text)
    except ValueError as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    raws, problem = _raw_records(payload, webhook_id)
    if problem is not None:
        return problem
    records: list[ActivityRecord] = []
    now = web.clock()
    for index, raw in enumerate(raws):
        try:
            records.append(parse_activity(raw, now=now))
        except RecordError as exc:
            where = {"index": index} if isinstance(payload, list) else {}
            return _error(422, exc.detail, field=_field(exc), reason=exc.reason, **where)
    stored = await run_in_threadpool(_store, web, records)
    if stored == 0:
        return JSONResponse({"status": "duplicate", "stored": 0, "webhook_id": webhook_id}, status_code=200)
    return JSONResponse({"status": "accepted", "stored": stored, "webhook_id": webhook_id}, status_code=202)


def _raw_records(payload: Any, webhook_id: str) -> tuple[list[dict[str, Any]], JSONResponse | None]:
    """The records with their ids taken from the webhook-id, or the 4xx that says what is wrong."""
    if isinstance(payload, dict):
        return [{**payload, "id": webhook_id}], None
    if not isinstance(payload, list) or not payload:
        return [], _error(422, "the body must be an activity record (a JSON object) or a non-empty list of them")
    if len(payload) > MAX_RECORDS:
        return [], _error(413, f"at most {MAX_RECORDS} records per request, got {len(payload)}")
    for index, item in enumerate(payload):
        if not isinstance(item, dict):
            return [], _error(422, "each record must be a JSON object", index=index)
    return [{**item, "id": f"{webhook_id}:{index}"} for index, item in enumerate(payload)], None


def _field(exc: RecordError) -> str:
    if exc.reason == "bad_profile":
        named = re.match(r"(lead\.\w+)", exc.detail)
        return named.group(1) if named else "lead"
    return _FIELDS.get(exc.reason, "record")


def _store(web: WebContext, records: list[ActivityRecord]) -> int:
    with session_scope(web.engine) as session:
        return store_batch(session=session, source=SOURCE, records=records).inserted


routes = [Route("/events", receive, methods=["POST"])]
