"""Who gets an SQL, how fast they must act, who hears about it, and when a handoff is given up.

The `handoff.owners`, `handoff.teams`, `handoff.sla`, `handoff.notify` and
`handoff.dead_letter_after` keys of `leadflow.yaml`. Sales managers change these often, so every
cross-reference (a team naming an owner that does not exist, say) is checked here, before a run.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from leadflow.leads.config.base import Strict
from leadflow.leads.db.models import ActivityType

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
CrmVendor = Literal["hubspot", "salesforce", "pipedrive"]
CRM_VENDORS: tuple[CrmVendor, ...] = ("hubspot", "salesforce", "pipedrive")
NotifyUrl = Annotated[str, Field(min_length=3, max_length=2000)]

SALES_ACTIVITY: tuple[str, ...] = (
    ActivityType.sales_accepted,
    ActivityType.sales_rejected,
    ActivityType.sales_disqualified,
    ActivityType.deal_won,
    ActivityType.deal_lost,
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _check_notify_url(value: str | None) -> str | None:
    """An apprise URL (json://, mailto://, slack://, …); tokens belong in ${ENV} references."""
    if value is not None and "://" not in value:
        raise ValueError("must be a notification URL such as mailto://…, slack://… or json://host/path")
    return value


def env_refs(url: str) -> list[str]:
    """The environment variables a notification URL refers to as ${NAME}."""
    return _ENV_REF.findall(url)


class Owner(Strict):
    """A salesperson who can own SQLs."""

    id: Name
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    notify: NotifyUrl | None = Field(
        default=None, description="Where this owner hears about a new lead (apprise URL); else the team's."
    )
    max_open_sqls: int | None = Field(
        default=None, ge=0, description="Capacity: the owner is skipped while they own this many SQLs."
    )
    crm_ids: dict[CrmVendor, str] = Field(
        default_factory=dict, description="The owner's user id in each CRM, so CRM records get the right owner."
    )

    @field_validator("notify")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        return _check_notify_url(value)


class SizeRange(Strict):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class Territory(Strict):
    """Which leads a team takes; every given part must match, a missing part matches anything."""

    countries: list[Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]] = Field(
        default_factory=list, description="ISO 3166 two-letter codes."
    )
    industries: list[str] = Field(default_factory=list, description="Case-insensitive industry names.")
    company_size: SizeRange | None = None

    def matches(self, *, country: str | None, industry: str | None, company_size: int | None) -> bool:
        if self.countries and (country or "").upper() not in {c.upper() for c in self.countries}:
            return False
        if self.industries and (industry or "").casefold() not in {i.casefold() for i in self.industries}:
            return False
        if self.company_size is not None:
            if company_size is None:
                return False
            low, high = self.company_size.min, self.company_size.max
            if (low is not None and company_size < low) or (high is not None and company_size > high):
                return False
        return True


class Team(Strict):
    """Owners who share leads by round robin; the first team whose territory matches takes a lead."""

    name: Name
    owners: list[Name] = Field(min_length=1)
    territory: Territory | None = Field(default=None, description="Leave out for a catch-all team.")
    notify: NotifyUrl | None = Field(default=None, description="For owners without their own notify URL.")
    manager: NotifyUrl | None = Field(default=None, description="Escalations go here (apprise URL).")
    fallback: Name | None = Field(
        default=None, description="Owner who takes leads when every team member is at capacity; else they wait."
    )

    @field_validator("notify", "manager")
    @classmethod
    def _notify_urls(cls, value: str | None) -> str | None:
        return _check_notify_url(value)

    @field_validator("owners")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an owner is listed twice")
        return value


class SlaConfig(Strict):
    """How long an owner has to act on a new SQL before it is reassigned or escalated."""

    hours: float = Field(gt=0, description="Hours from assignment to the deadline.")
    until: Literal["delivered", "sales_activity"] = Field(
        default="sales_activity",
        description="delivered: the handoff reached every destination; sales_activity: also one of activity_types.",
    )
    activity_types: list[str] = Field(default_factory=lambda: list(SALES_ACTIVITY))
    on_breach: Literal["reassign", "escalate"] = "reassign"
    max_reassignments: int = Field(
        default=1, ge=0, description="After this many reassignments a further breach escalates instead."
    )


class NotifyConfig(Strict):
    """Owner notifications (through apprise)."""

    enabled: bool = True
    crm_links: dict[CrmVendor, str] = Field(
        default_factory=dict,
        description="Record URL per CRM with {id}, e.g. https://app.hubspot.com/contacts/PORTAL/record/0-1/{id}.",
    )

    @field_validator("crm_links")
    @classmethod
    def _has_id(cls, value: dict[str, str]) -> dict[str, str]:
        for vendor, url in value.items():
            if "{id}" not in url:
                raise ValueError(f"{vendor}: the link must contain {{id}}")
        return value


class DeadLetterConfig(Strict):
    """When a handoff or notification that keeps failing is given up (whichever comes first)."""

    attempts: int = Field(default=8, ge=1)
    hours: float | None = Field(default=72, gt=0, description="Hours since it was queued (or re-driven).")


class AssignmentConfig(Strict):
    """The assignment part of `handoff`, validated as a whole so references can be checked."""

    owners: list[Owner] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)
    sla: SlaConfig | None = None
    notify: NotifyConfig = NotifyConfig()
    dead_letter_after: DeadLetterConfig = DeadLetterConfig()

    @model_validator(mode="after")
    def _references(self) -> AssignmentConfig:
        ids = [o.id for o in self.owners]
        if len(set(ids)) != len(ids):
            raise ValueError("owners: ids must be unique")
        names = [t.name for t in self.teams]
        if len(set(names)) != len(names):
            raise ValueError("teams: names must be unique")
        known = set(ids)
        for team in self.teams:
            missing = [o for o in [*team.owners, *([team.fallback] if team.fallback else [])] if o not in known]
            if missing:
                raise ValueError(f"team {team.name}: unknown owner(s) {', '.join(missing)} (not in handoff.owners)")
        if self.owners and not self.teams:
            raise ValueError("owners are listed but no team uses them (add handoff.teams)")
        return self

    def owner(self, owner_id: str) -> Owner | None:
        return next((o for o in self.owners if o.id == owner_id), None)

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)
