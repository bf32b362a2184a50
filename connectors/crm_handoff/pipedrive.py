"""Pipedrive as a handoff destination (API v2 where it has the resource, v1 for leads and activities).

For each SQL:

1. the person: the id from the ledger or `lead.crm_ids` (checked with `GET /api/v2/persons/{id}`),
   else `GET /api/v2/persons/search?term=<email>&fields=email&exact_match=true`, else
   `POST /api/v2/persons` with the name, the email and the owner;
2. a lead (`POST /api/v1/leads`) or a deal (`POST /api/v2/deals`) for the person, owned by the
   owner, titled `New SQL: … [lf…]`; `GET /api/v1/leads?person_id=…` / `GET /api/v2/deals?person_id=…`
   finds the one a lost answer already made by that reference;
3. an activity for the owner (`POST /api/v1/activities` with `user_id`, the person and the lead or
   deal, the explanation as its note); `GET /api/v2/activities?person_id=…` finds one already made.

The API token goes in the `x-api-token` header. 429 answers carry Retry-After and x-ratelimit-*
headers and are waited out; 401 is refused credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import (
    CrmSink,
    DeliveryLedger,
    create_once,
    delivery_errors,
    explanation_html,
    reference,
    subject,
)
from leadflow.connectors.errors import FatalAPIError
from leadflow.connectors.handoff_payload import HandoffPayload, PayloadLead
from leadflow.connectors.http import HeaderToken
from leadflow.connectors.pipedrive import classify
from leadflow.leads.config.handoff import PipedriveDestination

# Persons are found by email through Pipedrive's search, which indexes new persons with a delay, and
# Pipedrive allows two persons with one email: after a lost answer to a create, look again no sooner.
# Leads, deals and activities are listed by person, which is read straight from the data.
SEARCH_LAG = 10.0
MAX_PAGES = 20  # a person has a handful of leads and activities; this only bounds a runaway loop


class PipedriveSink(CrmSink):
    """A HandoffSink writing SQLs into Pipedrive; safe to repeat with the same idempotency key."""

    vendor = "pipedrive"
    spec: PipedriveDestination

    def __init__(
        self,
        spec: PipedriveDestination,
        *,
        token: str,
        ledger: DeliveryLedger,
        acquire: Callable[[], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            spec,
            ledger=ledger,
            auth=HeaderToken(token, header="x-api-token", scheme=None),
            classify=classify,
            acquire=acquire,
            transport=transport,
            retry=retry,
        )

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str:
        """Person, lead or deal, activity; returns `person <id>, lead <id>, activity <id>`."""
        with delivery_errors(self.name):
            owner = _int(payload.owner_crm_id(self.vendor, self.spec.default_owner_id))
            person_id = self._person(idempotency_key, payload, owner)
            kind = self.spec.create
            opened = self._opened(kind, idempotency_key, person_id, payload, owner)
            done = f"person {person_id}, {kind} {opened}"
            if self.spec.follow_up == "task":
                activity = self._activity(idempotency_key, person_id, kind, opened, payload, owner)
                done += f", activity {activity}"
        return done

    # --- the person ---------------------------------------------------------------------------

    def _person(self, key: str, payload: HandoffPayload, owner: int | None) -> int:
        lead = payload.lead
        email = lead.email
        person_id = _int(self.ledger.recall(key, "person"))
        if person_id is None:
            stored = _int(self.ledger.lead_crm_id(email, self.name))
            person_id = stored if stored is not None and self._exists(stored) else None
        if person_id is None:
            person_id = int(
                create_once(
                    find=lambda: self._search(email),
                    create=lambda: self._create_person(lead, owner),
                    retry=self.retry,
                    sleep=self.retry.sleep,
                    settle=SEARCH_LAG,
                )
            )
        self.ledger.remember(key, "person", str(person_id))
        self.ledger.save_lead_crm_id(email, self.name, str(person_id))
        return person_id

    def _exists(self, person_id: int) -> bool:
        try:
            body = self.client.request_json("GET", f"/api/v2/persons/{person_id}")
        except FatalAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return bool(body.get("data")) and not body["data"].get("is_deleted")

    def _search(self, email: str) -> str | None:
        params: dict[str, Any] = {"term": email, "fields": "email", "exact_match": "true", "limit": 50}
        for _ in range(MAX_PAGES):
            body = self.client.request_json("GET", "/api/v2/persons/search", params=params)
            for hit in (body.get("data") or {}).get("items") or []:
                item = hit.get("item") or {}
                if any(str(e).strip().lower() == email for e in item.get("emails") or []):
                    return str(item["id"])
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return None
            params["cursor"] = cursor
        return None

    def _create_person(self, lead: PayloadLead, owner: int | None) -> str:
        person: dict[str, Any] = {
            "name": lead.display_name,
            "emails": [{"value": lead.email, "primary": True, "label": "work"}],
        }
        if owner is not None:
            person["owner_id"] = owner
        return str(self.client.request_json_once("POST", "/api/v2/persons", json=person)["data"]["id"])

    # --- the lead or deal ---------------------------------------------------------------------

    def _opened(self, kind: str, key: str, person_id: int, payload: HandoffPayload, owner: int | None) -> str:
        done = self.ledger.recall(key, kind)
        if done:
            return done
        title = subject(payload, key)
        tag = reference(key)

        def find() -> str | None:
            rows = (
                self._v1_list("/api/v1/leads", {"person_id": person_id})
                if kind == "lead"
                else self._v2_list("/api/v2/deals", {"person_id": person_id})
            )
            return next((str(r["id"]) for r in rows if tag in str(r.get("title") or "")), None)

        def create() -> str:
            body: dict[str, Any] = {"title": title, "person_id": person_id}
            if owner is not None:
                body["owner_id"] = owner
            if kind == "lead":
                if self.spec.label_ids:
                    body["label_ids"] = self.spec.label_ids
                return str(self.client.request_json_once("POST", "/api/v1/leads", json=body)["data"]["id"])
            return str(self.client.request_json_once("POST", "/api/v2/deals", json=body)["data"]["id"])

        opened = create_once(find=find, create=create, retry=self.retry, sleep=self.retry.sleep)
        self.ledger.remember(key, kind, opened)
        return opened

    # --- the activity -------------------------------------------------------------------------

    def _activity(
        self, key: str, person_id: int, kind: str, opened: str, payload: HandoffPayload, owner: int | None
    ) -> str:
        done = self.ledger.recall(key, "activity")
        if done:
            return done
        title = subject(payload, key)
        tag = reference(key)

        def find() -> str | None:
            rows = self._v2_list("/api/v2/activities", {"person_id": person_id})
            return next((str(r["id"]) for r in rows if tag in str(r.get("subject") or "")), None)

        def create() -> str:
            body: dict[str, Any] = {
                "subject": title,
                "type": self.spec.activity_type,
                "due_date": datetime.now(UTC).date().isoformat(),
                "person_id": person_id,
                "note": explanation_html(payload, key),
                "done": 0,
            }
            body["lead_id" if kind == "lead" else "deal_id"] = opened if kind == "lead" else int(opened)
            if owner is not None:
                body["user_id"] = owner
            return str(self.client.request_json_once("POST", "/api/v1/activities", json=body)["data"]["id"])

        activity = create_once(find=find, create=create, retry=self.retry, sleep=self.retry.sleep)
        self.ledger.remember(key, "activity", activity)
        return activity

    # --- lists --------------------------------------------------------------------------------

    def _v1_list(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """v1 pages: `start`/`limit`, `additional_data.pagination.more_items_in_collection`/`next_start`."""
        query = {**params, "start": 0, "limit": 100}
        for _ in range(MAX_PAGES):
            body = self.client.request_json("GET", path, params=query)
            yield from body.get("data") or []
            pagination = (body.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                return
            query["start"] = pagination.get("next_start", query["start"] + query["limit"])

    def _v2_list(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """v2 pages: `cursor`/`limit`, `additional_data.next_cursor`."""
        query = {**params, "limit": 100}
        for _ in range(MAX_PAGES):
            body = self.client.request_json("GET", path, params=query)
            yield from body.get("data") or []
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor


def _int(value: str | None) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None
