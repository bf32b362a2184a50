"""A fake HubSpot API on loopback: the parts leadflow reads, with HubSpot's paths, shapes and errors.

- POST /crm/v3/objects/{object}/search (filterGroups, sorts, properties, limit ≤ 200, `after`;
  at most 10,000 results per search, like HubSpot — smaller with `search_cap` for tests)
- POST /crm/v3/objects/contacts/batch/read, POST /crm/v4/associations/{object}/contacts/batch/read
- GET /marketing/v3/forms, GET /form-integrations/v1/submissions/forms/{guid} (newest first, limit ≤ 50)
- GET /email/public/v1/events (startTimestamp/endTimestamp in ms, hasMore/offset, newest first)
- Bearer tokens; 401 EXPIRED_AUTHENTICATION; 429 with policyName and X-HubSpot-RateLimit-* headers.

What the handoff writes:

- GET/PATCH /crm/v3/objects/contacts/{id}, POST /crm/v3/objects/contacts (409 CONFLICT "Contact already
  exists. Existing ID: …" for a taken email; 400 for an unknown hubspot_owner_id)
- POST /crm/v3/objects/{tasks,notes} with `associations` (HUBSPOT_DEFINED type 204 task→contact, 202
  note→contact), searchable on `associations.contact` and with CONTAINS_TOKEN

Search is eventually consistent, as HubSpot's is: an object created through the API shows in search
results `search_lag` seconds later (0 by default), on the fake's `clock`, which a test may drive.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import Call, FakeVendor, Reply, VendorError

DEFAULT_PROPERTIES = {
    "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
}


def ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _as_ms(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    return ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
    except (ValueError, KeyError):
        raise VendorError(error(400, "Invalid paging token", "VALIDATION_ERROR")) from None


def error(status: int, message: str, category: str, **extra: Any) -> Reply:
    return Reply(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                          "category": category, **extra})  # fmt: skip


def throttled(retry_after: int = 1) -> Reply:
    """HubSpot's answer past the ten-second rolling limit."""
    return Reply(
        429,
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "TEN_SECONDLY_ROLLING",
            "groupName": "publicapi:private-app:12345:678",
        },
        {
            "Retry-After": str(retry_after),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "100",
            "X-HubSpot-RateLimit-Remaining": "0",
        },
    )


def expired() -> Reply:
    return error(
        401,
        "The OAuth token used to make this call expired 3 second(s) ago.",
        "EXPIRED_AUTHENTICATION",
        context={"expire time": ["2026-09-30T23:59:57.000Z"]},
    )


class FakeHubSpot(FakeVendor):
    def __init__(self, *, token: str = "pat-test-token", search_cap: int = 10_000) -> None:
        super().__init__()
        self.tokens = {token}
        self.search_cap = search_cap
        self.objects: dict[str, list[dict[str, Any]]] = {
            "contacts": [], "meetings": [], "calls": [], "emails": [], "tasks": [], "notes": []
        }  # fmt: skip
        self.owners = {"501", "502"}
        self.next_id = 9001
        self.associations: dict[tuple[str, str], list[str]] = {}
        self.forms: dict[str, list[dict[str, Any]]] = {}
        self.email_events: list[dict[str, Any]] = []
        self.requests_today = 0
        self.search_lag = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self.indexed_at: dict[tuple[str, str], float] = {}  # (object type, id) → when search finds it

    # --- data -------------------------------------------------------------------------------------

    def add_contact(self, contact_id: int, email: str | None, modified: datetime, **properties: Any) -> None:
        props = {"email": email, "lastmodifieddate": iso(modified), "createdate": iso(modified),
                 "hs_object_id": str(contact_id), **properties}  # fmt: skip
        self.objects["contacts"].append({"id": str(contact_id), "properties": props})

    def add_engagement(
        self, object_type: str, engagement_id: int, at: datetime, contacts: list[int], **properties: Any
    ) -> None:
        props = {"hs_timestamp": iso(at), "hs_lastmodifieddate": iso(at), "hs_object_id": str(engagement_id),
                 **properties}  # fmt: skip
        self.objects[object_type].append({"id": str(engagement_id), "properties": props})
        self.associations[(object_type, str(engagement_id))] = [str(c) for c in contacts]

    def add_submission(self, form_id: str, conversion_id: str, at: datetime, values: dict[str, str]) -> None:
        self.forms.setdefault(form_id, []).append(
            {
                "conversionId": conversion_id,
                "submittedAt": ms(at),
                "values": [{"name": k, "value": v} for k, v in values.items()],
                "pageUrl": f"https://www.acme.example/forms/{form_id}",
            }
        )

    def add_email_event(self, event_id: str, kind: str, recipient: str | None, at: datetime, **extra: Any) -> None:
        event = {"id": event_id, "created": ms(at), "type": kind, "recipient": recipient, "portalId": 62515,
                 "appId": 113, "appName": "BatchEmail", "emailCampaignId": 3165, **extra}  # fmt: skip
        self.email_events.append(event)

    def expire(self, token: str) -> None:
        self.tokens.discard(token)

    # --- protocol ---------------------------------------------------------------------------------

    def authorize(self, call: Call) -> Reply | None:
        header = call.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        if header.removeprefix("Bearer ") not in self.tokens:
            return expired()
        return None

    def extra_headers(self, call: Call) -> dict[str, str]:
        self.requests_today += 1
        return {
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": str(250000 - self.requests_today),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "100",
            "X-HubSpot-RateLimit-Remaining": "99",
        }

    def route(self, call: Call) -> Reply:
        parts = call.path.strip("/").split("/")
        if call.method == "POST" and parts[:3] == ["crm", "v3", "objects"] and parts[-1] == "search":
            return self.search(parts[3], call.body or {})
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) == 4 and call.method == "POST":
            return self.create(parts[3], call.body or {})
        if parts[:4] == ["crm", "v3", "objects", "contacts"] and len(parts) == 5 and parts[4] != "search":
            if call.method == "GET":
                return self.read(parts[4], call.query)
            if call.method == "PATCH":
                return self.update(parts[4], call.body or {})
        if call.method == "POST" and call.path == "/crm/v3/objects/contacts/batch/read":
            return self.batch_read(call.body or {})
        if call.method == "POST" and parts[:3] == ["crm", "v4", "associations"] and parts[-2:] == ["batch", "read"]:
            return self.associations_read(parts[3], call.body or {})
        if call.method == "GET" and call.path.rstrip("/") == "/marketing/v3/forms":
            return self.list_forms(call.query)
        if call.method == "GET" and parts[:4] == ["form-integrations", "v1", "submissions", "forms"]:
            return self.submissions(parts[4], call.query)
        if call.method == "GET" and call.path == "/email/public/v1/events":
            return self.events(call.query)
        return error(404, f"no route for {call.method} {call.path}", "OBJECT_NOT_FOUND")

    # --- writes (the handoff) ------------------------------------------------------------------

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        return next((c for c in self.objects["contacts"] if c["id"] == contact_id), None)

    def contacts_by_email(self, email: str) -> list[dict[str, Any]]:
        return [c for c in self.objects["contacts"] if (c["properties"].get("email") or "").lower() == email.lower()]

    def _check_owner(self, properties: dict[str, Any]) -> None:
        owner = properties.get("hubspot_owner_id")
        if owner is not None and str(owner) not in self.owners:
            raise VendorError(error(400, f'Property values were not valid: [{{"isValid":false,"message":"{owner} '
                                         'is not a valid owner id","error":"INVALID_OWNER_ID",'
                                         '"name":"hubspot_owner_id"}]', "VALIDATION_ERROR"))  # fmt: skip

    def _object(self, object_type: str, record: dict[str, Any]) -> Reply:
        now = iso(datetime.now(UTC))
        return Reply(201 if record.get("_new") else 200, {
            "id": record["id"], "properties": {k: v for k, v in record["properties"].items()},
            "createdAt": record["properties"].get("createdate", now), "updatedAt": now, "archived": False})  # fmt: skip

    def create(self, object_type: str, body: dict[str, Any]) -> Reply:
        if object_type not in ("contacts", "tasks", "notes"):
            return error(404, f"no route for POST /crm/v3/objects/{object_type}", "OBJECT_NOT_FOUND")
        properties = {k: (None if v is None else str(v)) for k, v in (body.get("properties") or {}).items()}
        self._check_owner(properties)
        if object_type == "contacts" and properties.get("email"):
            taken = self.contacts_by_email(properties["email"])
            if taken:
                return error(409, f"Contact already exists. Existing ID: {taken[0]['id']}", "CONFLICT")
        if object_type in ("tasks", "notes") and not properties.get("hs_timestamp"):
            return error(400, "Property values were not valid: hs_timestamp is required", "VALIDATION_ERROR")
        wanted_type = {"tasks": 204, "notes": 202}.get(object_type)
        contacts = []
        for association in body.get("associations") or []:
            to = str((association.get("to") or {}).get("id"))
            types = [t.get("associationTypeId") for t in association.get("types") or []]
            if wanted_type not in types or self.contact(to) is None:
                return error(400, f"invalid association to {to} with types {types}", "VALIDATION_ERROR")
            contacts.append(int(to))
        self.next_id += 1
        record = {"id": str(self.next_id), "properties": {**properties, "hs_object_id": str(self.next_id),
                  "createdate": iso(datetime.now(UTC)), "lastmodifieddate": iso(datetime.now(UTC))}}  # fmt: skip
        self.objects[object_type].append(record)
        self.indexed_at[(object_type, record["id"])] = self.clock() + self.search_lag
        if contacts:
            self.associations[(object_type, record["id"])] = [str(c) for c in contacts]
        return self._object(object_type, {**record, "_new": True})

    def read(self, contact_id: str, query: dict[str, str]) -> Reply:
        record = self.contact(contact_id)
        if record is None:
            return error(404, "resource not found", "OBJECT_NOT_FOUND")
        wanted = set((query.get("properties") or "").split(",")) | {"hs_object_id", "createdate",
                                                                      "lastmodifieddate"}  # fmt: skip
        return Reply(200, {"id": contact_id, "properties": {k: v for k, v in record["properties"].items()
                                                             if k in wanted}, "archived": False})  # fmt: skip

    def update(self, contact_id: str, body: dict[str, Any]) -> Reply:
        record = self.contact(contact_id)
        if record is None:
            return error(404, "resource not found", "OBJECT_NOT_FOUND")
        properties = {k: (None if v is None else str(v)) for k, v in (body.get("properties") or {}).items()}
        self._check_owner(properties)
        record["properties"].update(properties, lastmodifieddate=iso(datetime.now(UTC)))
        return self._object("contacts", record)

    def search(self, object_type: str, body: dict[str, Any]) -> Reply:
        limit = int(body.get("limit", 10))
        if limit > 200:
            return error(400, "limit must be less than or equal to 200", "VALIDATION_ERROR")
        offset = int(body.get("after") or 0)
        if offset >= self.search_cap:
            return error(400, f"after: paging beyond {self.search_cap} results is not supported", "VALIDATION_ERROR")
        groups = body.get("filterGroups") or []
        now = self.clock()
        records = [
            r for r in self.objects.get(object_type, [])
            if self.indexed_at.get((object_type, r["id"]), now) <= now
            and _matches(self._with_associations(object_type, r), groups)
        ]  # fmt: skip
        for sort in reversed(body.get("sorts") or []):
            name = sort["propertyName"] if isinstance(sort, dict) else str(sort).lstrip("-")
            descending = (
                (sort.get("direction") == "DESCENDING") if isinstance(sort, dict) else str(sort).startswith("-")
            )
            records.sort(key=lambda r: _as_ms(r["properties"].get(name)) or 0, reverse=descending)
        total = len(records)
        wanted = set(body.get("properties") or DEFAULT_PROPERTIES.get(object_type, [])) | {"hs_object_id"}
        page = records[offset : offset + limit]
        reply: dict[str, Any] = {
            "total": total,
            "results": [
                {
                    "id": r["id"],
                    "properties": {k: v for k, v in r["properties"].items() if k in wanted},
                    "createdAt": r["properties"].get("createdate"),
                    "archived": False,
                }  # fmt: skip
                for r in page
            ],
        }
        if offset + limit < total:
            reply["paging"] = {"next": {"after": str(offset + limit), "link": f"?after={offset + limit}"}}
        return Reply(200, reply)

    def _with_associations(self, object_type: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record as search filters see it: `associations.contact` holds its contacts' ids."""
        contacts = self.associations.get((object_type, record["id"]))
        if not contacts:
            return record
        return {**record, "properties": {**record["properties"], "associations.contact": contacts}}

    def batch_read(self, body: dict[str, Any]) -> Reply:
        by_id = {r["id"]: r for r in self.objects["contacts"]}
        wanted = set(body.get("properties") or []) | {"hs_object_id"}
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            return error(400, "batch size must be at most 100", "VALIDATION_ERROR")
        results = [
            {
                "id": i["id"],
                "properties": {k: v for k, v in by_id[i["id"]]["properties"].items() if k in wanted},
                "archived": False,
            }  # fmt: skip
            for i in inputs
            if i.get("id") in by_id
        ]
        return Reply(200, {"status": "COMPLETE", "results": results, "startedAt": iso(datetime.now(UTC)),
                           "completedAt": iso(datetime.now(UTC))})  # fmt: skip

    def associations_read(self, object_type: str, body: dict[str, Any]) -> Reply:
        results = []
        for item in body.get("inputs") or []:
            to = self.associations.get((object_type, str(item.get("id"))))
            if to:
                results.append(
                    {
                        "from": {"id": str(item["id"])},
                        "to": [{"toObjectId": int(c), "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 200, "label": None}]} for c in to],
                    }
                )  # fmt: skip
        return Reply(200, {"status": "COMPLETE", "results": results})

    def list_forms(self, query: dict[str, str]) -> Reply:
        ids = sorted(self.forms)
        offset, limit = _offset(query.get("after")), int(query.get("limit", 20))
        reply: dict[str, Any] = {
            "results": [
                {"id": f, "name": f"Form {f}", "formType": "hubspot", "archived": False}
                for f in ids[offset : offset + limit]
            ]  # fmt: skip
        }
        if offset + limit < len(ids):
            reply["paging"] = {"next": {"after": _token(offset + limit), "link": "?after=..."}}
        return Reply(200, reply)

    def submissions(self, form_id: str, query: dict[str, str]) -> Reply:
        if form_id not in self.forms:
            return error(404, f"Form {form_id} not found", "OBJECT_NOT_FOUND")
        limit = int(query.get("limit", 20))
        if limit > 50:
            return error(400, "limit must be at most 50", "VALIDATION_ERROR")
        newest_first = sorted(self.forms[form_id], key=lambda s: s["submittedAt"], reverse=True)
        offset = _offset(query.get("after"))
        reply: dict[str, Any] = {"results": newest_first[offset : offset + limit]}
        if offset + limit < len(newest_first):
            token = _token(offset + limit)
            reply["paging"] = {"next": {"after": token, "link": f"/form-integrations/v1/submissions/forms/"
                                                              f"{form_id}?after={token}"}}  # fmt: skip
        return Reply(200, reply)

    def events(self, query: dict[str, str]) -> Reply:
        start, end = _as_ms(query.get("startTimestamp")), _as_ms(query.get("endTimestamp"))
        limit = min(int(query.get("limit", 100)), 1000)
        events = [
            e
            for e in sorted(self.email_events, key=lambda e: e["created"], reverse=True)
            if (start is None or e["created"] >= start) and (end is None or e["created"] <= end)
        ]
        offset = _offset(query.get("offset"))
        page = events[offset : offset + limit]
        more = offset + limit < len(events)
        return Reply(200, {"hasMore": more, "offset": _token(offset + limit), "events": page})


def _matches(record: dict[str, Any], groups: list[dict[str, Any]]) -> bool:
    if not groups:
        return True
    return any(all(_test(record, f) for f in group.get("filters") or []) for group in groups)


def _test(record: dict[str, Any], rule: dict[str, Any]) -> bool:
    value = record["properties"].get(rule["propertyName"])
    if rule["operator"] == "HAS_PROPERTY":
        return value is not None
    if isinstance(value, list):  # associations.contact: any associated record matches
        return rule["operator"] == "EQ" and str(rule.get("value")) in value
    if rule["operator"] == "CONTAINS_TOKEN":
        return value is not None and str(rule.get("value")).lower() in str(value).lower()
    try:
        left, right = _as_ms(value), _as_ms(rule.get("value"))
    except ValueError:  # text, like an email: HubSpot compares it ignoring case
        text, wanted = str(value or "").lower(), str(rule.get("value") or "").lower()
        return {"EQ": text == wanted, "NEQ": text != wanted}.get(rule["operator"], False)
    if left is None or right is None:
        return False
    return {
        "EQ": left == right,
        "NEQ": left != right,
        "GT": left > right,
        "GTE": left >= right,
        "LT": left < right,
        "LTE": left <= right,
    }[rule["operator"]]
