"""Salesforce as a handoff destination (REST API, sObject resources and SOQL).

For each SQL:

1. the Lead: with `external_id_field` (a unique External ID field holding the lead's email),
   `GET /sobjects/Lead/{field}/{email}` tells whether it exists; an existing Lead gets `PATCH
   /sobjects/Lead/{Id}`, a new one is created by the upsert `PATCH /sobjects/Lead/{field}/{email}`,
   which can never make two. Without it, the Lead is found by `SELECT Id FROM Lead WHERE Email = …
   AND IsConverted = false` and created with `POST /sobjects/Lead` only when none is found (looked
   for again after an attempt whose answer was lost). Status, OwnerId and the profile are set;
   LastName and Company, which Salesforce requires, default to "[not provided]" on new Leads.
   A person with no open Lead who already is a Contact (`SELECT Id, OwnerId FROM Contact WHERE
   Email = …`: a converted Lead, a customer's colleague) gets no Lead: sales would work a
   duplicate of someone the account team knows. The Task goes on the Contact instead, and the
   Contact is not written to.
2. a Task for the owner (`POST /sobjects/Task`, WhoId = the Lead or Contact; the SQL's owner, else
   `default_owner_id`, else the Contact's owner) whose Subject carries the handoff reference;
   `SELECT Id FROM Task WHERE WhoId = … AND Subject = …` finds one already made.

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

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import (
    CrmSink,
    DeliveryLedger,
    create_once,
    delivery_errors,
    explanation_text,
    subject,
)
from leadflow.connectors.errors import FatalAPIError
from leadflow.connectors.handoff_payload import HandoffPayload, PayloadLead
from leadflow.connectors.salesforce import LEAD_FIELDS, classify, salesforce_auth
from leadflow.leads.config.handoff import SalesforceDestination

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

    def deliver(self, *, idempotency_key: str, payload: HandoffPayload) -> str:
        """Upsert the Lead (or find the Contact the person already is), then the Task; returns `Lead <Id>`
        or `Contact <Id>` (and `Task <Id>`)."""
        with delivery_errors(self.name):
            kind, who_id, who_owner = self._person(idempotency_key, payload)
            done = f"{kind} {who_id}"
            if self.spec.follow_up == "task":
                done += f", Task {self._task(idempotency_key, who_id, payload, who_owner)}"
        return done

    # --- the Lead, or the Contact -------------------------------------------------------------

    def _person(self, key: str, payload: HandoffPayload) -> tuple[str, str, str | None]:
        """The Lead the SQL is handed to: ("Lead", Id, None). A person with no open Lead who is already a
        Contact (a converted Lead, a customer's colleague) gets no duplicate Lead: ("Contact", Id, OwnerId)."""
        lead = payload.lead
        email = lead.email
        fields = self._fields(lead, payload)
        known = self.ledger.recall(key, "lead") or self._stored_lead_id(email)
        if known and self._update(known, fields):
            lead_id = known
        elif (found := self._open_lead(email, fields)) is not None:
            lead_id = found
        elif (contact := self._contact(email)) is not None:
            contact_id, owner = contact
            self.ledger.remember(key, "contact", contact_id)
            self.ledger.save_lead_crm_id(email, self.name, contact_id)
            return "Contact", contact_id, owner
        else:
            lead_id = self._new_lead(email, fields)
        self.ledger.remember(key, "lead", lead_id)
        self.ledger.save_lead_crm_id(email, self.name, lead_id)
        return "Lead", lead_id, None

    def _open_lead(self, email: str, fields: dict[str, Any]) -> str | None:
        """An existing, unconverted Lead for the email, updated with `fields`; None when there is none."""
        if self.spec.external_id_field:
            existing = self._by_external_id(email)
            if existing is not None and self._update(existing, fields):
                return existing
            return None
        found = self._find(email)
        return found if found is not None and self._update(found, fields) else None

    def _new_lead(self, email: str, fields: dict[str, Any]) -> str:
        if self.spec.external_id_field:
            return self._upsert(email, fields)
        # A Lead found on a later look was made by our own attempt whose answer was lost.
        return create_once(
            find=lambda: self._find(email),
            create=lambda: self._create(fields),
            retry=self.retry,
            sleep=self.retry.sleep,
        )

    def _contact(self, email: str) -> tuple[str, str | None] | None:
        """The oldest Contact with this email, and its owner."""
        contact = self._first(
            f"SELECT Id, OwnerId FROM Contact WHERE Email = {soql_string(email)} ORDER BY CreatedDate ASC"
        )
        if contact is None:
            return None
        owner = contact.get("OwnerId")
        return str(contact["Id"]), str(owner) if owner else None

    def _first(self, soql: str) -> dict[str, Any] | None:
        """The first record a SOQL query returns, or None."""
        records = self.client.request_json("GET", f"{self.api}/query", params={"q": soql}).get("records") or []
        return records[0] if records else None

    def _stored_lead_id(self, email: str) -> str | None:
        stored = self.ledger.lead_crm_id(email, self.name)
        return stored if stored and stored.startswith("00Q") else None  # a Contact id (003…) is not a Lead

    def _fields(self, lead: PayloadLead, payload: HandoffPayload) -> dict[str, Any]:
        mapping = {**LEAD_FIELDS, **self.spec.fields}
        fields: dict[str, Any] = {sf: lead.value(f) for f, sf in mapping.items() if sf and lead.value(f) is not None}
        fields["Email"] = lead.email
        fields["Status"] = self.spec.lead_status
        owner = payload.owner_crm_id(self.vendor, self.spec.default_owner_id)
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

    def _external_path(self, email: str) -> str:
        return f"{self.api}/sobjects/Lead/{self.spec.external_id_field}/{quote(email, safe='@')}"

    def _by_external_id(self, email: str) -> str | None:
        """The Lead whose External ID field holds the email (converted or not), or None."""
        try:
            existing = self.client.request_json("GET", self._external_path(email), params={"fields": "Id"})
        except FatalAPIError as exc:
            if exc.status != 404:
                raise
            return None
        if isinstance(existing, list):  # 300 Multiple Choices: the "unique" field is not
            field = self.spec.external_id_field
            raise FatalAPIError(self.name, f"several Leads have {field} = {email}; make the field unique")
        return str(existing["Id"]) if existing else None

    def _upsert(self, email: str, fields: dict[str, Any]) -> str:
        """A new Lead through the External ID upsert, which can never make two."""
        path = self._external_path(email)
        body = self.client.request_json("PATCH", path, json=self._for_create(fields))
        if body and body.get("id"):
            return str(body["id"])
        existing = self.client.request_json("GET", path, params={"fields": "Id"})
        return str(existing["Id"])

    def _find(self, email: str) -> str | None:
        lead = self._first(
            f"SELECT Id FROM Lead WHERE Email = {soql_string(email)} AND IsConverted = false ORDER BY CreatedDate ASC"
        )
        return str(lead["Id"]) if lead else None

    def _create(self, fields: dict[str, Any]) -> str:
        body = self.client.request_json_once("POST", f"{self.api}/sobjects/Lead", json=self._for_create(fields))
        return str(body["id"])

    # --- the Task -----------------------------------------------------------------------------

    def _task(self, key: str, who_id: str, payload: HandoffPayload, who_owner: str | None = None) -> str:
        done = self.ledger.recall(key, "task")
        if done:
            return done
        title = subject(payload, key)

        def find() -> str | None:
            task = self._first(
                f"SELECT Id FROM Task WHERE WhoId = {soql_string(who_id)} AND Subject = {soql_string(title)}"
            )
            return str(task["Id"]) if task else None

        def create() -> str:
            task: dict[str, Any] = {
                "WhoId": who_id,
                "Subject": title,
                "Description": explanation_text(payload)[:32000],
                "Status": "Not Started",
                "Priority": "High",
                "ActivityDate": datetime.now(UTC).date().isoformat(),
            }
            owner = payload.owner_crm_id(self.vendor, self.spec.default_owner_id) or who_owner
            if owner:
                task["OwnerId"] = owner
            return str(self.client.request_json_once("POST", f"{self.api}/sobjects/Task", json=task)["id"])

        task_id = create_once(find=find, create=create, retry=self.retry, sleep=self.retry.sleep)
        self.ledger.remember(key, "task", task_id)
        return task_id
