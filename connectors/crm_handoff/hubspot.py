"""HubSpot as a handoff destination (CRM v3 objects API).

For each SQL:

1. the contact: the id from the ledger or `lead.crm_ids`, else `POST /crm/v3/objects/contacts/search`
   by email, else `POST /crm/v3/objects/contacts` (HubSpot refuses a second contact with the same
   email with 409 "Existing ID: …", which is used as the answer); then `PATCH
   /crm/v3/objects/contacts/{id}` with the profile, `lifecyclestage` (never moved backwards: an
   opportunity or customer stays one) and `hubspot_owner_id`;
2. the follow-up: a task (`POST /crm/v3/objects/tasks`, association type 204 to the contact) or a
   note (`POST /crm/v3/objects/notes`, type 202) carrying the explanation, for the owner. Before it
   is created, `POST /crm/v3/objects/{tasks,notes}/search` on the contact and the handoff reference
   finds one a lost answer already created.

Needs a private app token with crm.objects.contacts.read and .write (tasks and notes are
written under the contacts scopes).
"""

from __future__ import annotations

from collections.abc import Callable
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
from leadflow.connectors.hubspot import classify
from leadflow.leads.config.handoff import HubSpotDestination

CONTACT_FIELDS = {
    "first_name": "firstname",
    "last_name": "lastname",
    "company": "company",
    "title": "jobtitle",
    "industry": "industry",
    "country": "country",
}
LIFECYCLE = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
             "evangelist"]  # fmt: skip
# HubSpot's search index trails writes: integrators are told to wait about 10 s after a create before
# searching for it (Okta Workflows' HubSpot connector says so). A task or note whose create answer was
# lost is looked for again no sooner (contacts need not: HubSpot refuses a second one with the email).
SEARCH_LAG = 10.0
ASSOCIATION_TYPES = {"tasks": 204, "notes": 202}  # HUBSPOT_DEFINED: task → contact, note → contact


class HubSpotSink(CrmSink):
    """A HandoffSink writing SQLs into HubSpot; safe to repeat with the same idempotency key."""

    vendor = "hubspot"
    spec: HubSpotDestination

    def __init__(
        self,
        spec: HubSpotDestination,
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
            auth=HeaderToken(token),
            classify=classify,
            acquire=acquire,
            transport=transport,
            retry=retry,
        )

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str:
        """Upsert the contact, then the follow-up; returns `contact <id>` (and `task <id>`/`note <id>`)."""
        with delivery_errors(self.name):
            contact_id = self._contact(idempotency_key, payload)
            done = f"contact {contact_id}"
            if self.spec.follow_up != "none":
                kind = "tasks" if self.spec.follow_up == "task" else "notes"
                done += f", {self.spec.follow_up} {self._follow_up(kind, idempotency_key, contact_id, payload)}"
        return done

    # --- the contact --------------------------------------------------------------------------

    def _contact(self, key: str, payload: HandoffPayload) -> str:
        lead = payload.lead
        email = lead.email
        properties = self._properties(lead, payload)
        known = self.ledger.recall(key, "contact") or self.ledger.lead_crm_id(email, self.name)
        found = self._read(known) if known else None
        if found is None:
            found = self._search(email)
        if found is None:
            contact_id = self._create(properties)
        else:
            contact_id, current = found
            self._update(contact_id, properties, current)
        self.ledger.remember(key, "contact", contact_id)
        self.ledger.save_lead_crm_id(email, self.name, contact_id)
        return contact_id

    def _properties(self, lead: PayloadLead, payload: HandoffPayload) -> dict[str, str]:
        fields = {**CONTACT_FIELDS, **self.spec.fields}
        properties = {
            prop: str(lead.value(field)) for field, prop in fields.items() if prop and lead.value(field) is not None
        }
        properties["email"] = lead.email
        properties["lifecyclestage"] = self.spec.lifecycle_stage
        owner = payload.owner_crm_id(self.vendor, self.spec.default_owner_id)
        if owner:
            properties["hubspot_owner_id"] = owner
        return properties

    def _read(self, contact_id: str) -> tuple[str, dict[str, Any]] | None:
        try:
            body = self.client.request_json(
                "GET", f"/crm/v3/objects/contacts/{contact_id}", params={"properties": "email,lifecyclestage"}
            )
        except FatalAPIError as exc:
            if exc.status == 404:  # merged or deleted since: find it again by email
                return None
            raise
        return str(body["id"]), body.get("properties") or {}

    def _search(self, email: str) -> tuple[str, dict[str, Any]] | None:
        body = self.client.request_json(
            "POST",
            "/crm/v3/objects/contacts/search",
            json={
                "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}],
                "properties": ["email", "lifecyclestage"],
                "limit": 1,
            },
        )
        results = body.get("results") or []
        return (str(results[0]["id"]), results[0].get("properties") or {}) if results else None

    def _create(self, properties: dict[str, str]) -> str:
        try:
            body = self.client.request_json("POST", "/crm/v3/objects/contacts", json={"properties": properties})
        except FatalAPIError as exc:
            existing = _existing_id(exc)
            if existing is None:
                raise
            # Created in the meantime (or by a lost answer): update that one instead.
            found = self._read(existing)
            self._update(existing, properties, found[1] if found else {})
            return existing
        return str(body["id"])

    def _update(self, contact_id: str, properties: dict[str, str], current: dict[str, Any]) -> None:
        wanted = dict(properties)
        stage = str(current.get("lifecyclestage") or "")
        if stage and (stage not in LIFECYCLE or _rank(stage) > _rank(wanted["lifecyclestage"])):
            del wanted["lifecyclestage"]  # HubSpot stages only move forward; keep what sales set
        self.client.request_json("PATCH", f"/crm/v3/objects/contacts/{contact_id}", json={"properties": wanted})

    # --- the task or note ---------------------------------------------------------------------

    def _follow_up(self, kind: str, key: str, contact_id: str, payload: HandoffPayload) -> str:
        step = kind.rstrip("s")
        done = self.ledger.recall(key, step)
        if done:
            return done
        created = create_once(
            find=lambda: self._find_follow_up(kind, key, contact_id),
            create=lambda: self._create_follow_up(kind, key, contact_id, payload),
            retry=self.retry,
            sleep=self.retry.sleep,
            settle=SEARCH_LAG,
        )
        self.ledger.remember(key, step, created)
        return created

    def _find_follow_up(self, kind: str, key: str, contact_id: str) -> str | None:
        text = "hs_task_subject" if kind == "tasks" else "hs_note_body"
        body = self.client.request_json(
            "POST",
            f"/crm/v3/objects/{kind}/search",
            json={
                "filterGroups": [
                    {
                        "filters": [
                            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
                            {"propertyName": text, "operator": "CONTAINS_TOKEN", "value": reference(key)},
                        ]
                    }
                ],
                "properties": [text],
                "limit": 1,
            },
        )
        results = body.get("results") or []
        return str(results[0]["id"]) if results else None

    def _create_follow_up(self, kind: str, key: str, contact_id: str, payload: HandoffPayload) -> str:
        owner = payload.owner_crm_id(self.vendor, self.spec.default_owner_id)
        properties: dict[str, str] = {"hs_timestamp": _utc_now()}
        if kind == "tasks":
            properties |= {
                "hs_task_subject": subject(payload, key),
                "hs_task_body": explanation_html(payload, key),
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_task_type": "TODO",
            }
        else:
            properties["hs_note_body"] = f"<p><strong>{subject(payload, key)}</strong></p>" + explanation_html(
                payload, key
            )
        if owner:
            properties["hubspot_owner_id"] = owner
        association = {
            "to": {"id": contact_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": ASSOCIATION_TYPES[kind]}],
        }
        body = self.client.request_json_once(
            "POST", f"/crm/v3/objects/{kind}", json={"properties": properties, "associations": [association]}
        )
        return str(body["id"])


def _rank(stage: str) -> int:
    return LIFECYCLE.index(stage) if stage in LIFECYCLE else len(LIFECYCLE)


def _existing_id(exc: FatalAPIError) -> str | None:
    """HubSpot's 409 for a duplicate email: "Contact already exists. Existing ID: 12345"."""
    if exc.status != 409:
        return None
    _, found, tail = exc.detail.partition("Existing ID:")
    digits = tail.strip().split()[0].rstrip(".") if found and tail.strip() else ""
    return digits if digits.isdigit() else None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
