"""Handoff destinations in `leadflow.yaml`: where every new SQL goes (a folder, a webhook, a CRM).

Each destination has a name, which is part of every handoff's idempotency key. A destination
added to a workspace that already handed SQLs to others starts with the SQLs made from then on,
not with every past one (`since` says otherwise; see handoff/starts.py). The old single
`handoff.destination: URL` form still works: it becomes one destination named as before (`file`,
or `webhook:<host>`), so outbox rows written before the list existed keep matching and nothing is
delivered twice.

Credentials never go in the file: a CRM destination names the environment variable (or the
Prefect Secret block) that holds them, like a CRM source.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Discriminator, Field, Tag, field_validator

from leadflow.leads.config.base import Strict
from leadflow.leads.config.sources import EnvName, FieldMap

DestinationName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.:-]*$", max_length=100)]
CRM_KINDS = ("hubspot", "salesforce", "pipedrive")


ALL_SQLS = "all"
_SINCE_FORMS = "since must be a date (2026-11-01), a moment (2026-11-01T09:00:00Z) or all"


class Destination(Strict):
    """What every destination has: from which SQLs on it receives them."""

    since: datetime | Literal["all"] | None = Field(
        default=None,
        description=(
            "SQLs made from this moment (UTC; a date means its midnight) on, or `all`. Unset: every SQL if the "
            "workspace handed none to other destinations before, else those made from when this one first ran."
        ),
    )

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: object) -> object:
        """A YAML date is that day's midnight; a time with a zone is taken to UTC (stored times are naive UTC)."""
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time())
        if isinstance(value, str) and value.strip() != ALL_SQLS:
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(_SINCE_FORMS + f", got {value!r}") from None
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        if value is not None and value != ALL_SQLS:  # a number would be read as seconds since 1970
            raise ValueError(_SINCE_FORMS + f", got {value!r}")
        return value


class FileDestination(Destination):
    """One JSON file per handoff in a folder (relative to the workspace)."""

    name: DestinationName = "file"
    kind: Literal["file"]
    path: str = Field(default="handoff-inbox", description="Folder, relative to the workspace.")


class WebhookDestination(Destination):
    """A POST signed per Standard Webhooks with LEADFLOW_WEBHOOK_SECRET (or `secret_env`)."""

    name: DestinationName
    kind: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: EnvName | None = Field(default=None, description="Variable with the signing secret (whsec_…).")
    secret_block: str | None = None
    allow_private_addresses: bool | None = Field(
        default=None, description="Overrides handoff.allow_private_addresses for this destination."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="How long to wait for the receiver's answer; then retried later."
    )


class CrmDestination(Destination):
    """What every CRM destination has: where, which credentials, which rate limit, the fallback owner."""

    name: DestinationName
    base_url: str
    token_env: EnvName | None
    token_block: str | None = Field(default=None, description="Prefect Secret block with the token.")
    rate_limit: str | None = Field(
        default=None, description="Prefect global concurrency limit taken per request (default leadflow-KIND)."
    )
    default_owner_id: str | None = Field(
        default=None, description="The CRM user that gets SQLs whose owner has no id in this CRM."
    )
    follow_up: Literal["task", "none"] = Field(default="task", description="Create a task carrying the reasons.")


class HubSpotDestination(CrmDestination):
    kind: Literal["hubspot"]
    base_url: str = "https://api.hubapi.com"
    token_env: EnvName | None = "HUBSPOT_TOKEN"
    # HubSpot alone can also log a note: the field widens the base's choices, which mypy calls an unsafe override.
    follow_up: Literal["task", "note", "none"] = "task"  # type: ignore[assignment]
    lifecycle_stage: str = Field(default="salesqualifiedlead", description="lifecyclestage set on the contact.")
    fields: FieldMap = Field(default_factory=dict, description="Lead field → contact property, over the defaults.")


class SalesforceDestination(CrmDestination):
    kind: Literal["salesforce"]
    base_url: str = Field(description="Your org's My Domain URL, e.g. https://acme.my.salesforce.com.")
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d$")] = "v61.0"
    token_env: EnvName | None = "SALESFORCE_ACCESS_TOKEN"
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None
    external_id_field: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")] | None = Field(
        default=None,
        description="A unique External ID field on Lead that holds the lead's email (upsert); else match by Email.",
    )
    lead_status: str = Field(default="Open - Not Contacted", description="Lead Status set on handoff.")
    lead_source: str | None = Field(default=None, description="LeadSource set on leads leadflow creates.")
    fields: FieldMap = Field(default_factory=dict, description="Lead field → Salesforce Lead field, over the defaults.")


class PipedriveDestination(CrmDestination):
    kind: Literal["pipedrive"]
    base_url: str = "https://api.pipedrive.com"
    token_env: EnvName | None = "PIPEDRIVE_API_TOKEN"
    create: Literal["lead", "deal"] = Field(default="lead", description="What to open for the person.")
    activity_type: str = Field(default="task", description="Activity type (key_string) of the follow-up.")
    label_ids: list[str] = Field(default_factory=list, description="Lead label ids (create: lead).")


def _kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return f"{_KIND_TAG}{kind}"


_KIND_TAG = "kind="  # leads/config/workspace.py leaves tags starting with this out of error locations
HandoffDestination = Annotated[
    Annotated[FileDestination, Tag(f"{_KIND_TAG}file")]
    | Annotated[WebhookDestination, Tag(f"{_KIND_TAG}webhook")]
    | Annotated[HubSpotDestination, Tag(f"{_KIND_TAG}hubspot")]
    | Annotated[SalesforceDestination, Tag(f"{_KIND_TAG}salesforce")]
    | Annotated[PipedriveDestination, Tag(f"{_KIND_TAG}pipedrive")],
    Discriminator(
        _kind,
        custom_error_type="destination_kind",
        custom_error_message="kind must be one of file, webhook, hubspot, salesforce, pipedrive",
    ),
]
VendorDestination = HubSpotDestination | SalesforceDestination | PipedriveDestination


def legacy_name(url: str) -> str:
    """The name a single-URL destination always had: `file`, or `webhook:<host>`."""
    scheme, _, rest = url.strip().partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1] if scheme.lower().startswith("http") else ""
    return f"webhook:{host}" if host else "file"


def destination_from_url(url: str) -> FileDestination | WebhookDestination:
    """`file://DIR` / `file:DIR` → a folder, `http(s)://…` → a webhook, named as leadflow always named them."""
    text = url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("file: URL names no folder")
        return FileDestination(kind="file", path=path)
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError("webhook URL has no host")
        return WebhookDestination(kind="webhook", name=legacy_name(text), url=text)
    if not scheme:
        raise ValueError("handoff URL has no scheme; use file:// or https://")
    raise ValueError(f"unsupported handoff URL scheme {scheme!r}; use file:// or https://")
