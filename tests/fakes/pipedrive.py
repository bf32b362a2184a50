"""A fake Pipedrive API v2 on loopback: persons, activities and deals, cursor-paginated.

- GET /api/v2/{persons,activities,deals}: ids, updated_since (update_time ≥), updated_until (<),
  sort_by (id, update_time, add_time), sort_direction, limit (≤ 500), cursor; the answer is
  {"success": true, "data": […], "additional_data": {"next_cursor": …}}.
- The API token in `x-api-token` (or `api_token`); 401 {"success": false, "error": "unauthorized access"};
  429 with Retry-After and the x-ratelimit-* headers, which every answer carries.

What the handoff writes:

- GET /api/v2/persons/search (term, fields=email, exact_match, limit, cursor → data.items[].item;
  eventually consistent: a person created through the API is found `search_lag` s later on `clock`),
  GET /api/v2/persons/{id}, POST /api/v2/persons
- GET /api/v1/leads (person_id, start/limit → additional_data.pagination), POST /api/v1/leads
  (uuid ids; a person or organization is required), POST /api/v2/deals
- POST /api/v1/activities (user_id, person_id, lead_id/deal_id), listed by GET /api/v2/activities?person_id=
- an owner_id/user_id must be a user of the company (400 otherwise)
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import Call, FakeVendor, Reply

ENTITIES = ("persons", "activities", "deals")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unauthorized() -> Reply:
    info = "Please check developers.pipedrive.com for more information about Pipedrive API."
    return Reply(401, {"success": False, "error": "unauthorized access", "errorCode": 401, "error_info": info})


def over_limit(retry_after: int = 1) -> Reply:
    return Reply(
        429,
        {"success": False, "error": "Request over limit", "errorCode": 429},
        {
            "Retry-After": str(retry_after),
            "x-ratelimit-limit": "40",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(retry_after),
        },  # fmt: skip
    )


def failure(status: int, message: str) -> Reply:
    return Reply(status, {"success": False, "error": message, "errorCode": status})


class FakePipedrive(FakeVendor):
    def __init__(self, *, token: str = "pipedrive-test-token") -> None:
        super().__init__()
        self.tokens = {token}
        self.data: dict[str, list[dict[str, Any]]] = {name: [] for name in ENTITIES}
        self.leads: list[dict[str, Any]] = []
        self.users = {1, 7, 8}
        self.next_id = 500
        self.search_lag = 0.0  # persons created through the API show in search this much later
        self.clock: Callable[[], float] = time.monotonic
        self.indexed_at: dict[int, float] = {}

    def add_person(self, person_id: int, emails: list[tuple[str, bool]], updated: datetime, **fields: Any) -> None:
        self.data["persons"].append(
            {
                "id": person_id,
                "name": fields.get("first_name", ""),
                "owner_id": 1,
                "org_id": None,
                "add_time": rfc3339(updated),
                "update_time": rfc3339(updated),
                "is_deleted": False,
                "emails": [{"value": v, "primary": p, "label": "work"} for v, p in emails],
                "phones": [],
                "visible_to": 3,
                **fields,
            }  # fmt: skip
        )

    def add_activity(
        self, activity_id: int, kind: str, updated: datetime, *, done: bool, person_id: int | None, **fields: Any
    ) -> None:
        self.data["activities"].append(
            {
                "id": activity_id,
                "subject": f"{kind} {activity_id}",
                "type": kind,
                "owner_id": 1,
                "is_deleted": False,
                "add_time": rfc3339(updated),
                "update_time": rfc3339(updated),
                "done": done,
                "marked_as_done_time": rfc3339(updated) if done else None,
                "person_id": person_id,
                "participants": [{"person_id": person_id, "primary": True}] if person_id else [],
                **fields,
            }  # fmt: skip
        )

    def add_deal(self, deal_id: int, status: str, updated: datetime, *, person_id: int | None, **fields: Any) -> None:
        self.data["deals"].append(
            {
                "id": deal_id,
                "title": f"Deal {deal_id}",
                "owner_id": 1,
                "person_id": person_id,
                "org_id": None,
                "status": status,
                "value": 5000,
                "currency": "EUR",
                "add_time": rfc3339(updated),
                "update_time": rfc3339(updated),
                "won_time": rfc3339(updated) if status == "won" else None,
                "lost_time": rfc3339(updated) if status == "lost" else None,
                "is_deleted": status == "deleted",
                **fields,
            }  # fmt: skip
        )

    def revoke(self, token: str) -> None:
        self.tokens.discard(token)

    def authorize(self, call: Call) -> Reply | None:
        token = call.headers.get("x-api-token") or call.query.get("api_token")
        return None if token in self.tokens else unauthorized()

    def extra_headers(self, call: Call) -> dict[str, str]:
        return {"x-ratelimit-limit": "40", "x-ratelimit-remaining": "39", "x-ratelimit-reset": "2",
                "x-daily-requests-left": "9999"}  # fmt: skip

    def route(self, call: Call) -> Reply:
        parts = call.path.strip("/").split("/")
        body = call.body or {}
        if call.method == "GET" and parts == ["api", "v2", "persons", "search"]:
            return self.search_persons(call.query)
        if call.method == "GET" and parts[:3] == ["api", "v2", "persons"] and len(parts) == 4:
            person = self.find("persons", int(parts[3]) if parts[3].isdigit() else -1)
            return Reply(200, {"success": True, "data": person}) if person else failure(404, "Person not found")
        if call.method == "POST" and parts == ["api", "v2", "persons"]:
            return self.create_person(body)
        if parts == ["api", "v1", "leads"]:
            return self.create_lead(body) if call.method == "POST" else self.list_leads(call.query)
        if call.method == "POST" and parts == ["api", "v2", "deals"]:
            return self.create_deal(body)
        if call.method == "POST" and parts == ["api", "v1", "activities"]:
            return self.create_activity(body)
        if call.method != "GET" or parts[:2] != ["api", "v2"] or len(parts) != 3 or parts[2] not in ENTITIES:
            return failure(404, f"Unknown method {call.method} {call.path}")
        return self.list(parts[2], call.query)

    # --- writes (the handoff) ------------------------------------------------------------------

    def find(self, entity: str, row_id: int) -> dict[str, Any] | None:
        return next((r for r in self.data[entity] if r["id"] == row_id and not r.get("is_deleted")), None)

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _owner(self, value: Any) -> int | Reply:
        owner = 1 if value is None else value
        if not isinstance(owner, int) or owner not in self.users:
            return failure(400, f"User {owner} not found")
        return owner

    def search_persons(self, query: dict[str, str]) -> Reply:
        term = (query.get("term") or "").lower()
        if len(term) < 2:
            return failure(400, "Search term must be at least 2 characters long")
        exact = query.get("exact_match") == "true"
        now = self.clock()
        hits = [
            p for p in self.data["persons"] if not p.get("is_deleted") and self.indexed_at.get(p["id"], now) <= now
            and any((e["value"].lower() == term) if exact else term in e["value"].lower() for e in p["emails"])
        ]  # fmt: skip
        limit = int(query.get("limit", 100))
        offset = json.loads(base64.b64decode(query["cursor"]))["offset"] if query.get("cursor") else 0
        page = hits[offset : offset + limit]
        more = offset + limit < len(hits)
        cursor = base64.b64encode(json.dumps({"offset": offset + limit}).encode()).decode() if more else None
        items = [{"result_score": 1.0, "item": {"id": p["id"], "type": "person", "name": p["name"], "phones": [],
                  "emails": [e["value"] for e in p["emails"]], "visible_to": 3, "owner": {"id": p["owner_id"]},
                  "organization": None, "custom_fields": [], "notes": [], "update_time": p["update_time"]}}
                 for p in page]  # fmt: skip
        return Reply(200, {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": cursor}})

    def create_person(self, body: dict[str, Any]) -> Reply:
        if not body.get("name"):
            return failure(400, "Name must be given")
        owner = self._owner(body.get("owner_id"))
        if isinstance(owner, Reply):
            return owner
        now = datetime.now(UTC)
        person_id = self._new_id()
        emails = [(e["value"], bool(e.get("primary"))) for e in body.get("emails") or []]
        self.add_person(person_id, emails, now, name=body["name"], owner_id=owner)
        self.indexed_at[person_id] = self.clock() + self.search_lag
        return Reply(200, {"success": True, "data": self.find("persons", person_id)})

    def create_lead(self, body: dict[str, Any]) -> Reply:
        if not body.get("title"):
            return failure(400, "Title must be given")
        if body.get("person_id") is None and body.get("organization_id") is None:
            return failure(400, "A lead must be linked to a person or an organization")
        if body.get("person_id") is not None and self.find("persons", body["person_id"]) is None:
            return failure(400, f"Person {body['person_id']} not found")
        owner = self._owner(body.get("owner_id"))
        if isinstance(owner, Reply):
            return owner
        now = rfc3339(datetime.now(UTC))
        lead = {"id": str(uuid.uuid4()), "title": body["title"], "owner_id": owner, "creator_id": 1,
                "label_ids": body.get("label_ids") or [], "person_id": body.get("person_id"),
                "organization_id": body.get("organization_id"), "source_name": "API", "is_archived": False,
                "was_seen": False, "value": None, "add_time": now, "update_time": now}  # fmt: skip
        self.leads.append(lead)
        return Reply(201, {"success": True, "data": lead})

    def list_leads(self, query: dict[str, str]) -> Reply:
        rows = [r for r in self.leads if not r["is_archived"]]
        if query.get("person_id"):
            rows = [r for r in rows if r["person_id"] == int(query["person_id"])]
        start, limit = int(query.get("start", 0)), int(query.get("limit", 100))
        if limit > 500:
            return failure(400, "Parameter 'limit' must be less than or equal to 500")
        page = rows[start : start + limit]
        pagination: dict[str, Any] = {"start": start, "limit": limit,
                                      "more_items_in_collection": start + limit < len(rows)}  # fmt: skip
        if pagination["more_items_in_collection"]:
            pagination["next_start"] = start + limit
        return Reply(200, {"success": True, "data": page, "additional_data": {"pagination": pagination}})

    def create_deal(self, body: dict[str, Any]) -> Reply:
        if not body.get("title"):
            return failure(400, "Title must be given")
        owner = self._owner(body.get("owner_id"))
        if isinstance(owner, Reply):
            return owner
        deal_id = self._new_id()
        self.add_deal(deal_id, "open", datetime.now(UTC), person_id=body.get("person_id"), title=body["title"],
                      owner_id=owner)  # fmt: skip
        return Reply(200, {"success": True, "data": self.find("deals", deal_id)})

    def create_activity(self, body: dict[str, Any]) -> Reply:
        if not body.get("subject") or not body.get("type"):
            return failure(400, "Subject and type must be given")
        owner = self._owner(body.get("user_id"))
        if isinstance(owner, Reply):
            return owner
        if body.get("lead_id") and not any(r["id"] == body["lead_id"] for r in self.leads):
            return failure(400, f"Lead {body['lead_id']} not found")
        activity_id = self._new_id()
        self.add_activity(activity_id, body["type"], datetime.now(UTC), done=bool(body.get("done")),
                          person_id=body.get("person_id"), subject=body["subject"], owner_id=owner,
                          lead_id=body.get("lead_id"), deal_id=body.get("deal_id"), note=body.get("note"),
                          due_date=body.get("due_date"))  # fmt: skip
        row = self.find("activities", activity_id) or {}
        v1 = {**row, "user_id": owner}
        return Reply(201, {"success": True, "data": v1})

    def list(self, entity: str, query: dict[str, str]) -> Reply:
        limit = int(query.get("limit", 100))
        if limit > 500:
            return failure(400, "Parameter 'limit' must be less than or equal to 500")
        rows = list(self.data[entity])
        if query.get("ids"):
            wanted = {int(i) for i in query["ids"].split(",")}
            rows = [r for r in rows if r["id"] in wanted]
        for name in ("person_id", "deal_id", "owner_id"):
            if query.get(name):
                rows = [r for r in rows if r.get(name) == int(query[name])]
        if query.get("lead_id"):
            rows = [r for r in rows if r.get("lead_id") == query["lead_id"]]
        if query.get("updated_since"):
            rows = [r for r in rows if _t(r["update_time"]) >= _t(query["updated_since"])]
        if query.get("updated_until"):
            rows = [r for r in rows if _t(r["update_time"]) < _t(query["updated_until"])]
        key = query.get("sort_by", "id")
        if key not in ("id", "update_time", "add_time"):
            return failure(400, f"Invalid sort_by {key}")
        rows.sort(key=lambda r: (r[key], r["id"]), reverse=query.get("sort_direction", "asc") == "desc")
        offset = json.loads(base64.b64decode(query["cursor"]))["offset"] if query.get("cursor") else 0
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        cursor = base64.b64encode(json.dumps({"offset": offset + limit}).encode()).decode() if more else None
        return Reply(200, {"success": True, "data": page, "additional_data": {"next_cursor": cursor}})


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
