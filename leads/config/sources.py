"""CRM sources in `leadflow.yaml`: HubSpot, Salesforce and Pipedrive.

Credentials never go in the file: a source names the environment variable (or the Prefect
Secret block) that holds them. Each vendor has sensible defaults for its streams, its field
mapping and its activity types; the config overrides only what differs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from leadflow.leads.config.base import Strict
from leadflow.leads.db.models import PROFILE_FIELDS, ActivityType

SourceName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]


def _profile_field(name: str) -> str:
    if name not in PROFILE_FIELDS:
        raise ValueError(f"not a lead field; one of {', '.join(PROFILE_FIELDS)}")
    return name


ProfileField = Annotated[str, AfterValidator(_profile_field)]
FieldMap = dict[ProfileField, str | None]


def _type_or_ignore(value: str) -> str:
    if value != "ignore" and value not in ActivityType.__members__.values():
        raise ValueError(f"must be an activity type ({', '.join(ActivityType)}) or ignore")
    return value


TypeOrIgnore = Annotated[str, AfterValidator(_type_or_ignore)]


class VendorSource(Strict):
    """What every CRM source has: where, which credentials, from when, and the mapping overrides."""

    name: SourceName
    base_url: str = Field(description="The vendor's API base URL (change it for a sandbox or a proxy).")
    token_env: EnvName | None = Field(description="Environment variable (or workspace .env entry) with the token.")
    token_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block with the token; used instead of token_env."
    )
    start_date: datetime | None = Field(
        default=None, description="On the first run, only records changed since then (default: everything)."
    )
    rate_limit: str | None = Field(
        default=None, description="Prefect global concurrency limit taken before each request (default leadflow-KIND)."
    )
    activity_types: dict[str, TypeOrIgnore] = Field(
        default_factory=dict, description="Vendor event → activity type (or ignore), over the vendor's defaults."
    )


class HubSpotSource(VendorSource):
    kind: Literal["hubspot"]
    base_url: str = "https://api.hubapi.com"
    token_env: EnvName | None = "HUBSPOT_TOKEN"
    streams: list[Literal["contacts", "form_submissions", "engagements", "email_events"]] = Field(
        default=["contacts", "form_submissions", "engagements", "email_events"], min_length=1
    )
    forms: list[str] = Field(default_factory=list, description="Form GUIDs to read; empty means every form.")
    engagement_objects: list[Literal["meetings", "calls", "emails", "notes", "tasks"]] = ["meetings", "calls", "emails"]
    fields: FieldMap = Field(default_factory=dict, description="Lead field → contact property, over the defaults.")
    page_size: int = Field(default=100, ge=1, le=200)


class SalesforceSource(VendorSource):
    kind: Literal["salesforce"]
    base_url: str = Field(description="Your org's My Domain URL, e.g. https://acme.my.salesforce.com.")
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d$")] = "v61.0"
    token_env: EnvName | None = "SALESFORCE_ACCESS_TOKEN"
    client_id_env: EnvName | None = Field(
        default=None, description="With client_secret_env: the OAuth client credentials flow instead of a token."
    )
    client_secret_env: EnvName | None = None
    streams: list[Literal["Lead", "Contact", "Task", "CampaignMember"]] = Field(
        default=["Lead", "Contact", "Task", "CampaignMember"], min_length=1
    )
    fields: dict[Literal["Lead", "Contact"], FieldMap] = Field(
        default_factory=dict, description="Per object: lead field → Salesforce field (Account.Name style paths)."
    )
    page_size: int = Field(default=2000, ge=200, le=2000)


class PipedriveSource(VendorSource):
    kind: Literal["pipedrive"]
    base_url: str = "https://api.pipedrive.com"
    token_env: EnvName | None = "PIPEDRIVE_API_TOKEN"
    streams: list[Literal["persons", "activities", "deals"]] = Field(
        default=["persons", "activities", "deals"], min_length=1
    )
    fields: FieldMap = Field(default_factory=dict, description="Lead field → person field, over the defaults.")
    page_size: int = Field(default=500, ge=1, le=500)
