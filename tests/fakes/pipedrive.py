"""A fake Pipedrive API v2 on loopback: persons, activities and deals, cursor-paginated.

- GET /api/v2/{persons,activities,deals}: ids, updated_since (update_time ≥), updated_until (<),
  sort_by (id, update_time, add_time), sort_direction, limit (≤ 500), cursor; the answer is
  {"success": true, "data": […], "additional_data": {"next_cursor": …}}.
- The API token in `x-api-token` (or `api_token`); 401 {"success": false, "error": "unauthorized access"};
  429 with Retry-After and the x-ratelimit-* headers, which every answer carries.
"""

from __future__ import annotations

import base64
import json
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
        if call.method != "GET" or parts[:2] != ["api", "v2"] or len(parts) != 3 or parts[2] not in ENTITIES:
            return failure(404, f"Unknown method {call.method} {call.path}")
        return self.list(parts[2], call.query)

    def list(self, entity: str, query: dict[str, str]) -> Reply:
        limit = int(query.get("limit", 100))
        if limit > 500:
            return failure(400, "Parameter 'limit' must be less than or equal to 500")
        rows = list(self.data[entity])
        if query.get("ids"):
            wanted = {int(i) for i in query["ids"].split(",")}
            rows = [r for r in rows if r["id"] in wanted]
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
