"""Salesforce as a handoff destination (REST API, sObject resources and SOQL).

For each SQL:

1. the Lead: with `external_id_field` (a unique External ID field holding the lead's email),
   `GET /sobjects/Lead/{field}/{email}` tells whether it exists; an existing Lead gets `PATCH
   /sobjects/Lead/{Id}`, a new one is created by the upsert `PATCH /sobjects/Lead/{field}/{email}`,
   which can never make two. Without it, the Lead is found by `SELECT Id FROM Lead WHERE Email = …
   AND IsConverted = false` and created with `POST /sobjects/Lead` only when none is found (looked
   for again after an attempt whose answer was lost). Status, OwnerId and the profile are set;
   LastName and Company, which Salesforce requires, default to "[not provided]" on new Leads.
2. a Task for the owner (`POST /sobjects/Task`, WhoId = the Lead) whose Subject carries the
   handoff reference; `SELECT Id FROM Task WHERE WhoId = … AND Subject = …` finds one already made.

Auth as for the Salesforce source: an access token, or a connected app's client credentials.
`REQUEST_LIMIT_EXCEEDED` (403) is retried for the concurrent-request limit and fatal for the
daily allowance, as in connectors/salesforce.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from connectors.crm_handoff.common import (
    CrmSink,
    DeliveryLedger,
    create_once,
    delivery_errors,
    explanation_text,
    lead_of,
    owner_crm_id,
    subject,
)
from connectors.http import FatalAPIError, RetryPolicy
from connectors.salesforce import LEAD_FIELDS, classify, salesforce_auth
from leads.handoff_config import SalesforceDestination

NOT_PROVIDED = "[not provided]"  # what Web-to-Lead writes into required fields it has no value for


def soql_string(value: str) -> str:
    """A SOQL string literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceSink(CrmSink):
    """A HandoffSink writing SQLs into Salesforce as Leads with a Task; safe to repeat with the same key."""

    vendor = "salesforce"
    spec: SalesforceDestination

    def __init__(
        self,
        spec: SalesforceDestination,
        *,
        ledger: DeliveryLedger,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        acquire: Callable[[], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        base_url = spec.base_url.rstrip("/")
        auth = salesforce_auth(
            base_url, token=token, client_id=client_id, client_secret=client_secret, owner=f"destination {spec.name!r}"
        )
        super().__init__(
            spec,
            ledger=ledger,
            auth=auth,
            classify=classify,
            base_url=base_url,
            acquire=acquire,
            transport=transport,
            retry=retry,
        )
        self.api = f"/services/data/{spec.api_version}"

    def deliver(self, *, idempotency_key: str, payload: dict[str, Any]) -> str:
        """Upsert the Lead, then the Task; returns `Lead <Id>` (and `Task <Id>`)."""
        with delivery_errors(self.name):
            lead_id = self._lead(idempotency_key, payload)
            done = f"Lead {lead_id}"
            if self.spec.follow_up == "task":
                done += f", Task {self._task(idempotency_key, lead_id, payload)}"
        return done

    # --- the Lead -----------------------------------------------------------------------------

    def _lead(self, key: str, payload: dict[str, Any]) -> str:
        lead = lead_of(payload)
        email = str(lead["email"])
        fields = self._fields(lead, payload)
        known = self.ledger.recall(key, "lead") or self._stored_lead_id(email)
        if known and self._update(known, fields):
            lead_id = known
        elif self.spec.external_id_field:
            lead_id = self._upsert(email, fields)
        elif (found := self._find(email)) is not None and self._update(found, fields):
            lead_id = found
        else:
            # A Lead found on a later look was made by our own attempt whose answer was lost.
            lead_id = create_once(
                find=lambda: self._find(email),
                create=lambda: self._create(fields),
                retry=self.retry,
                sleep=self.retry.sleep,
            )
        self.ledger.remember(key, "lead", lead_id)
        self.ledger.save_lead_crm_id(email, self.name, lead_id)
        return lead_id

    def _stored_lead_id(self, email: str) -> str | None:
        stored = self.ledger.lead_crm_id(email, self.name)
        return stored if stored and stored.startswith("00Q") else None  # a Contact id (003…) is not a Lead

    def _fields(self, lead: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        mapping = {**LEAD_FIELDS, **self.spec.fields}
        fields: dict[str, Any] = {sf: lead[f] for f, sf in mapping.items() if sf and lead.get(f) is not None}
        fields["Email"] = str(lead["email"])
        fields["Status"] = self.spec.lead_status
        owner = owner_crm_id(payload, self.vendor, self.spec.default_owner_id)
        if owner:
            fields["OwnerId"] = owner
        return fields

    def _for_create(self, fields: dict[str, Any]) -> dict[str, Any]:
        required = {"LastName": NOT_PROVIDED, "Company": NOT_PROVIDED}
        extra = {"LeadSource": self.spec.lead_source} if self.spec.lead_source else {}
        return {**required, **extra, **fields}

    def _update(self, lead_id: str, fields: dict[str, Any]) -> bool:
        """PATCH the Lead; False when it no longer exists (deleted, or merged into another)."""
        try:
            self.client.request_json("PATCH", f"{self.api}/sobjects/Lead/{lead_id}", json=fields)
        except FatalAPIError as exc:
            if exc.status == 404 or exc.code in ("ENTITY_IS_DELETED", "CANNOT_UPDATE_CONVERTED_LEAD"):
                return False
            raise
        return True

    def _upsert(self, email: str, fields: dict[str, Any]) -> str:
        field = self.spec.external_id_field
        path = f"{self.api}/sobjects/Lead/{field}/{quote(email, safe='@')}"
        try:
            existing = self.client.request_json("GET", path, params={"fields": "Id"})
        except FatalAPIError as exc:
            if exc.status != 404:
                raise
            existing = None
        if isinstance(existing, list):  # 300 Multiple Choices: the "unique" field is not
            raise FatalAPIError(self.name, f"several Leads have {field} = {email}; make the field unique")
        if existing:
            lead_id = str(existing["Id"])
            self._update(lead_id, fields)
            return lead_id
        body = self.client.request_json("PATCH", path, json=self._for_create(fields))
        if body and body.get("id"):
            return str(body["id"])
        existing = self.client.request_json("GET", path, params={"fields": "Id"})
        return str(existing["Id"])

    def _find(self, email: str) -> str | None:
        soql = (
            f"SELECT Id FROM Lead WHERE Email = {soql_string(email)} AND IsConverted = false ORDER BY CreatedDate ASC"
        )
        body = self.client.request_json("GET", f"{self.api}/query", params={"q": soql})
        records = body.get("records") or []
        return str(records[0]["Id"]) if records else None

    def _create(self, fields: dict[str, Any]) -> str:
        body = self.client.request_json_once("POST", f"{self.api}/sobjects/Lead", json=self._for_create(fields))
        return str(body["id"])

    # --- the Task -----------------------------------------------------------------------------

    def _task(self, key: str, lead_id: str, payload: dict[str, Any]) -> str:
        done = self.ledger.recall(key, "task")
        if done:
            return done
        title = subject(payload, key)

        def find() -> str | None:
            soql = f"SELECT Id FROM Task WHERE WhoId = {soql_string(lead_id)} AND Subject = {soql_string(title)}"
            records = self.client.request_json("GET", f"{self.api}/query", params={"q": soql}).get("records") or []
            return str(records[0]["Id"]) if records else None

        def create() -> str:
            task: dict[str, Any] = {
                "WhoId": lead_id,
                "Subject": title,
                "Description": explanation_text(payload)[:32000],
                "Status": "Not Started",
                "Priority": "High",
                "ActivityDate": datetime.now(UTC).date().isoformat(),
            }
            owner = owner_crm_id(payload, self.vendor, self.spec.default_owner_id)
            if owner:
                task["OwnerId"] = owner
            return str(self.client.request_json_once("POST", f"{self.api}/sobjects/Task", json=task)["id"])

        task_id = create_once(find=find, create=create, retry=self.retry, sleep=self.retry.sleep)
        self.ledger.remember(key, "task", task_id)
        return task_id
