"""A fake Salesforce REST API on loopback: SOQL queries and their query locators, OAuth tokens, errors.

- GET /services/data/vXX.X/query?q=SOQL: SELECT fields (relationship paths like Account.Name),
  FROM one object, WHERE conditions joined by AND (>=, >, <=, <, =, != on fields; datetime
  literals, null, 'text'), ORDER BY one field; `totalSize`, `done`, `records` with `attributes`,
  and `nextRecordsUrl` (GET /services/data/vXX.X/query/<locator>) while not done. The batch size
  comes from `Sforce-Query-Options: batchSize=N`; like Salesforce, a batch may hold fewer records
  (`max_batch`, for tests with small data). An unknown field is 400 INVALID_FIELD.
- POST /services/oauth2/token: the client credentials flow.
- Errors as a JSON list of {"message", "errorCode"}: 401 INVALID_SESSION_ID, 403 REQUEST_LIMIT_EXCEEDED.

What the handoff writes (sObject resources):

- POST /sobjects/{Lead,Task} → 201 {"id", "success", "errors"}; a Lead needs LastName and Company
  (400 REQUIRED_FIELD_MISSING), an OwnerId must be a user and a Task's WhoId a Lead that is not
  converted or a Contact (400 FIELD_INTEGRITY_EXCEPTION); a converted Lead cannot be written (400
  CANNOT_UPDATE_CONVERTED_LEAD)
- PATCH /sobjects/Lead/{Id} → 204; GET and PATCH (upsert) /sobjects/Lead/{ExternalIdField}/{value}
  → 200/404, 201 {"created": true} / 200 {"created": false}, 300 when the value matches several
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import Call, FakeVendor, Reply, VendorError

VERSION = "v61.0"
SCHEMA = {
    "Lead": {"Id", "Email", "FirstName", "LastName", "Company", "Title", "Industry", "NumberOfEmployees", "Country",
             "CountryCode", "SystemModstamp", "CreatedDate", "IsConverted", "Status", "OwnerId", "LeadSource",
             "Leadflow_Email__c"},
    "Contact": {"Id", "Email", "FirstName", "LastName", "Account.Name", "Account.Industry",
                "Account.NumberOfEmployees", "Title", "MailingCountry", "SystemModstamp", "CreatedDate", "OwnerId"},
    "Task": {"Id", "Subject", "TaskSubtype", "Type", "Status", "CreatedDate", "CompletedDateTime", "SystemModstamp",
             "WhoId", "Who.Email", "ActivityDate", "Description", "OwnerId", "Priority"},
    "CampaignMember": {"Id", "Email", "Status", "HasResponded", "FirstRespondedDate", "CreatedDate", "SystemModstamp",
                       "CampaignId", "Campaign.Name", "Campaign.Type", "LeadId", "ContactId"},
}  # fmt: skip
RELATED = {"Account": "Account", "Who": "Lead", "Campaign": "Campaign"}
QUERY = re.compile(
    r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?"
    r"(?: ORDER BY (?P<order>[\w.]+)(?: (?P<direction>ASC|DESC))?)?$",
    re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(r"^([\w.]+) (>=|<=|!=|=|>|<) (.+)$")
EXTERNAL_IDS = {"Lead": {"Leadflow_Email__c"}}
PREFIXES = {"Lead": "00Q", "Task": "00T"}
REQUIRED = {"Lead": ("LastName", "Company"), "Task": ()}


def stamp(moment: datetime) -> str:
    """Salesforce's datetime format: 2026-09-01T09:00:00.000+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def errors(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code}], headers or {})


def integrity(message: str, field: str) -> Reply:
    return Reply(400, [{"message": message, "errorCode": "FIELD_INTEGRITY_EXCEPTION", "fields": [field]}])


def session_expired() -> Reply:
    return errors(401, "Session expired or invalid", "INVALID_SESSION_ID")


def concurrent_limit() -> Reply:
    return errors(403, "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", "REQUEST_LIMIT_EXCEEDED")


def daily_limit() -> Reply:
    return errors(403, "TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED")


def unavailable(retry_after: int = 1) -> Reply:
    return errors(
        503, "Server is unavailable; try again later.", "SERVER_UNAVAILABLE", {"Retry-After": str(retry_after)}
    )


class FakeSalesforce(FakeVendor):
    def __init__(
        self,
        *,
        token: str | None = "00Dxx0000001gPL!AR8AQ.test",
        client: tuple[str, str] | None = None,
        max_batch: int = 2000,
    ) -> None:
        super().__init__()
        self.tokens = {token} if token else set()
        self.client = client
        self.max_batch = max_batch
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMA}
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self.issued: list[str] = []
        self.api_usage = 0
        self.users = {"005xx000001Sv6eAAC", "005xx000001Sv7fAAC"}
        self.serial = 0

    def add(self, object_name: str, record_id: str, modified: datetime, **fields: Any) -> None:
        self.records[object_name].append({"Id": record_id, "SystemModstamp": stamp(modified), **fields})

    def expire(self, token: str) -> None:
        self.tokens.discard(token)

    def authorize(self, call: Call) -> Reply | None:
        if call.path == "/services/oauth2/token":
            return None
        token = call.headers.get("authorization", "").removeprefix("Bearer ")
        return None if token in self.tokens else session_expired()

    def extra_headers(self, call: Call) -> dict[str, str]:
        self.api_usage += 1
        return {"Sforce-Limit-Info": f"api-usage={self.api_usage}/15000"}

    def route(self, call: Call) -> Reply:
        if call.method == "POST" and call.path == "/services/oauth2/token":
            return self.token(call.body or {})
        if call.method == "GET" and call.path == f"/services/data/{VERSION}/query":
            return self.query(call.query.get("q", ""), call.headers.get("sforce-query-options", ""))
        prefix = f"/services/data/{VERSION}/query/"
        if call.method == "GET" and call.path.startswith(prefix):
            return self.more(call.path.removeprefix(prefix))
        sobjects = f"/services/data/{VERSION}/sobjects/"
        if call.path.startswith(sobjects):
            return self.sobject(call.method, call.path.removeprefix(sobjects).split("/"), call.body or {})
        return errors(404, "The requested resource does not exist", "NOT_FOUND")

    # --- writes (the handoff) ------------------------------------------------------------------

    def record(self, name: str, record_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records.get(name, []) if r["Id"] == record_id), None)

    def sobject(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply:
        name = parts[0]
        if name not in PREFIXES:
            return errors(404, f"The requested resource does not exist: {name}", "NOT_FOUND")
        if len(parts) == 1 and method == "POST":
            return self.insert(name, body)
        if len(parts) == 2 and method == "PATCH":
            record = self.record(name, parts[1])
            if record is None:
                return errors(404, "The requested resource does not exist", "NOT_FOUND")
            if record.get("IsConverted"):
                return errors(400, "cannot reference converted lead", "CANNOT_UPDATE_CONVERTED_LEAD")
            self.check(name, body)
            record.update(body, SystemModstamp=stamp(datetime.now(UTC)))
            return Reply(204, None)
        if len(parts) == 3 and method in ("GET", "PATCH"):
            field, value = parts[1], parts[2]
            if field not in EXTERNAL_IDS.get(name, set()):
                return errors(404, f"Provided external ID field does not exist or is not accessible: {field}",
                              "NOT_FOUND")  # fmt: skip
            matches = [r for r in self.records[name] if str(r.get(field) or "").lower() == value.lower()]
            if len(matches) > 1:
                return Reply(300, [f"/services/data/{VERSION}/sobjects/{name}/{r['Id']}" for r in matches])
            if method == "GET":
                if not matches:
                    return errors(404, "The requested resource does not exist", "NOT_FOUND")
                return Reply(200, self.shape(name, matches[0], ["Id"]))
            if field in body:
                return errors(400, f"{field}: field can not be specified in the request body", "INVALID_FIELD")
            if matches:
                if matches[0].get("IsConverted"):
                    return errors(400, "cannot reference converted lead", "CANNOT_UPDATE_CONVERTED_LEAD")
                self.check(name, body)
                matches[0].update(body, SystemModstamp=stamp(datetime.now(UTC)))
                return Reply(200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False})
            reply = self.insert(name, {**body, field: value})
            return Reply(201, {**reply.body, "created": True}) if reply.status == 201 else reply
        return errors(405, f"HTTP Method '{method}' not allowed", "METHOD_NOT_ALLOWED")

    def check(self, name: str, body: dict[str, Any]) -> None:
        for field in body:
            if field not in SCHEMA[name] or field in ("Id", "SystemModstamp", "CreatedDate", "IsConverted"):
                raise VendorError(errors(400, f"No such column '{field}' on sobject of type {name}", "INVALID_FIELD"))
        owner = body.get("OwnerId")
        if owner is not None and owner not in self.users:
            raise VendorError(integrity(f"Owner ID: id value of incorrect type: {owner}", "OwnerId"))
        who = body.get("WhoId")  # a Task's person: a Lead (not converted) or a Contact
        if name == "Task" and who is not None:
            person = self.record("Lead", who) or self.record("Contact", who)
            if person is None:
                raise VendorError(integrity("Name ID: id value of incorrect type", "WhoId"))
            if person.get("IsConverted"):
                raise VendorError(integrity("cannot reference converted lead", "WhoId"))

    def insert(self, name: str, body: dict[str, Any]) -> Reply:
        self.check(name, body)
        missing = [f for f in REQUIRED[name] if not body.get(f)]
        if missing:
            return Reply(400, [{"message": f"Required fields are missing: [{', '.join(missing)}]",
                                "errorCode": "REQUIRED_FIELD_MISSING", "fields": missing}])  # fmt: skip
        self.serial += 1
        record_id = f"{PREFIXES[name]}xx{self.serial:010d}AAA"
        now = stamp(datetime.now(UTC))
        extra = {"IsConverted": False} if name == "Lead" else {}
        self.records[name].append({**extra, **body, "Id": record_id, "CreatedDate": now, "SystemModstamp": now})
        return Reply(201, {"id": record_id, "success": True, "errors": []})

    def token(self, form: dict[str, str]) -> Reply:
        if form.get("grant_type") != "client_credentials" or self.client != (
            form.get("client_id"),
            form.get("client_secret"),
        ):
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = f"00Dxx0000001gPL!{uuid.uuid4().hex}"
        self.tokens.add(token)
        self.issued.append(token)
        return Reply(
            200,
            {
                "access_token": token,
                "signature": "c2lnbmF0dXJl",
                "scope": "api",
                "instance_url": self.url,
                "id": f"{self.url}/id/00Dxx0000001gPLEAY/005xx000001Sv6eAAC",
                "token_type": "Bearer",
                "issued_at": str(int(datetime.now(UTC).timestamp() * 1000)),
            },
        )

    def query(self, soql: str, options: str) -> Reply:
        match = QUERY.match(soql.strip())
        if match is None:
            return errors(400, f"unexpected token in: {soql}", "MALFORMED_QUERY")
        name = match["object"]
        if name not in SCHEMA:
            return errors(400, f"sObject type '{name}' is not supported.", "INVALID_TYPE")
        fields = [f.strip() for f in match["fields"].split(",")]
        for field in fields:
            if field not in SCHEMA[name]:
                raise VendorError(errors(400, f"No such column '{field}' on entity '{name}'.", "INVALID_FIELD"))
        rows = [r for r in self.records[name] if all(_holds(r, c) for c in _conditions(match["where"]))]
        if match["order"]:
            rows.sort(
                key=lambda r: str(r.get(match["order"]) or ""), reverse=(match["direction"] or "").upper() == "DESC"
            )
        batch = 2000
        size = re.search(r"batchSize=(\d+)", options)
        if size:
            batch = max(200, min(2000, int(size.group(1))))
        batch = min(batch, self.max_batch)
        shaped = [self.shape(name, r, fields) for r in rows]
        locator = f"01gRO{uuid.uuid4().hex[:13].upper()}"
        self.locators[locator] = shaped
        return self.batch(locator, 0, batch)

    def more(self, tail: str) -> Reply:
        locator, _, offset = tail.rpartition("-")
        if locator not in self.locators or not offset.isdigit():
            return errors(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        return self.batch(locator, int(offset), self.max_batch)

    def batch(self, locator: str, offset: int, size: int) -> Reply:
        rows = self.locators[locator]
        end = offset + min(size, self.max_batch)
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[offset:end]}
        if end < len(rows):
            body["nextRecordsUrl"] = f"/services/data/{VERSION}/query/{locator}-{end}"
        return Reply(200, body)

    def shape(self, name: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": name, "url": f"/services/data/{VERSION}/sobjects/{name}/{record['Id']}"}
        }
        for field in fields:
            if "." not in field:
                out[field] = record.get(field)
                continue
            relation, child = field.split(".", 1)
            if relation in out and out[relation] is None:
                continue
            if not any(k.startswith(f"{relation}.") for k in record):
                out[relation] = None
                continue
            related = out.setdefault(relation, {"attributes": {"type": RELATED.get(relation, relation), "url": "…"}})
            related[child] = record.get(field)
        return out


def _conditions(where: str | None) -> list[tuple[str, str, Any]]:
    if not where:
        return []
    parsed = []
    for part in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE):
        match = CONDITION.match(part.strip())
        if match is None:
            raise VendorError(errors(400, f"unexpected token: {part}", "MALFORMED_QUERY"))
        field, op, literal = match.groups()
        value: Any
        if literal.lower() == "null":
            value = None
        elif literal.lower() in ("true", "false"):
            value = literal.lower() == "true"
        elif literal.startswith("'") and literal.endswith("'"):
            value = re.sub(r"\\(.)", r"\1", literal[1:-1])
        elif re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", literal):
            value = datetime.fromisoformat(literal.replace("Z", "+00:00"))
        else:
            raise VendorError(errors(400, f"value of filter criterion for field '{field}' must be of type dateTime "
                                          "and should not be enclosed in quotes", "INVALID_FIELD"))  # fmt: skip
        parsed.append((field, op, value))
    return parsed


def _holds(record: dict[str, Any], condition: tuple[str, str, Any]) -> bool:
    field, op, value = condition
    actual: Any = record.get(field)
    if isinstance(value, datetime):
        if actual is None:
            return False
        text = str(actual)
        actual = datetime.fromisoformat(f"{text[:-2]}:{text[-2:]}" if text[-5] in "+-" else text)
    if value is None:
        return {"=": actual is None, "!=": actual is not None}.get(op, False)
    if actual is None:
        return False
    return {"=": actual == value, "!=": actual != value, ">": actual > value, ">=": actual >= value,
            "<": actual < value, "<=": actual <= value}[op]  # fmt: skip
