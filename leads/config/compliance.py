"""The `compliance:` section of `leadflow.yaml`: what is checked right before every email is sent.

Send windows (in each lead's own time zone), a frequency cap across all sequences and, where the
business needs it, recorded consent. Suppression (unsubscribes, bounces, complaints, manual
do-not-contact) needs no config: it is always checked.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from leadflow.leads.config.base import Strict

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: object) -> time:
    """A time of day from "09:00"; YAML 1.1 reads an unquoted 9:00 as minutes (sexagesimal 540), so take that too."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return time(23, 59, 59, 999999) if value == 24 * 60 else time(value // 60, value % 60)
    text = str(value).strip()
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not match or int(match[1]) > 24 or int(match[2]) > 59 or (int(match[1]) == 24 and int(match[2])):
        raise ValueError(f'must be a time of day like "09:00" or "17:30", got {value!r}')
    hours, minutes = int(match[1]), int(match[2])
    return time(23, 59, 59, 999999) if hours == 24 else time(hours, minutes)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like Europe/Amsterdam") from None
    return name


class SendWindow(Strict):
    """Emails go out only on these days between start and end, in the lead's local time."""

    days: list[Weekday] = Field(default=list(WEEKDAYS[:5]), min_length=1, description="Days mail may go out.")
    start: time = Field(default=time(9, 0), description='Local time the window opens, "HH:MM".')
    end: time = Field(default=time(18, 0), description='Local time the window closes, "HH:MM" (up to "24:00").')
    default_timezone: str = Field(default="UTC", description="For leads without a (known) time zone.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parse_clock(cls, value: object) -> time:
        return _clock(value)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError("start must be before end (windows that span midnight are not supported)")
        return self


class FrequencyCap(Strict):
    """At most `max_emails` nurture emails per lead in any `per_days` days, across all sequences.

    An email over the cap is deferred until the cap allows it, never dropped.
    """

    max_emails: int = Field(ge=1, description="Emails a lead may receive in the window.")
    per_days: float = Field(gt=0, description="Length of the rolling window in days.")


class ConsentRule(Strict):
    """Whether a lead must have recorded consent (`lead.consent: true`) before it is emailed.

    A lead whose consent is recorded as withdrawn (`false`) is never emailed, whatever this says.
    """

    required: bool = Field(default=False, description="Require recorded consent.")
    countries: list[str] = Field(
        default_factory=list,
        description="When given, consent is required only for leads in these countries (and leads with no country).",
    )

    @field_validator("countries")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        codes = [c.strip().upper() for c in value]
        bad = [c for c in codes if not re.fullmatch(r"[A-Z]{2}", c)]
        if bad:
            raise ValueError(f"countries must be two-letter codes like DE, got {', '.join(bad)}")
        return codes


class ComplianceConfig(Strict):
    send_window: SendWindow | None = Field(default=None, description="Unset: emails may go out at any time.")
    frequency_cap: FrequencyCap | None = Field(default=None, description="Unset: no cap.")
    consent: ConsentRule = ConsentRule()
