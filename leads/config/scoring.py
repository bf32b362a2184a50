"""Scoring and stage rules of the workspace config: what makes a lead fit, engaged, an MQL, an SQL.

Kept apart from the rest of the config because it is the part marketing ops tune most, and the
part the scoring engine, explanations and backtests read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from leadflow.leads.config.base import Strict
from leadflow.leads.db.models import ActivityType, Stage

LeadField = Literal["title", "industry", "company_size", "country", "email_domain", "company"]
BantField = Literal["budget", "authority", "need", "timing"]

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
        "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.com", "gmx.de", "gmx.net", "web.de",
        "proton.me", "protonmail.com", "mail.com", "zoho.com", "yandex.com", "hotmail.nl", "live.nl",
        "ziggo.nl", "kpnmail.nl", "hotmail.dk", "live.dk", "hotmail.co.uk", "yahoo.co.uk", "t-online.de",
    }
)  # fmt: skip


class Condition(Strict):
    """A test on one lead field. Exactly one of: pattern, one_of, equals, at_least/at_most, free_mail."""

    field: LeadField
    pattern: str | None = Field(default=None, description="Regular expression searched in the field.")
    one_of: list[str] | None = Field(default=None, description="Case-insensitive set of accepted values.")
    equals: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    free_mail: bool | None = Field(
        default=None, description="email_domain only: true matches free-mail providers, false company domains."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_condition(self) -> Condition:
        given = [k for k in ("pattern", "one_of", "equals", "free_mail") if getattr(self, k) is not None]
        if self.at_least is not None or self.at_most is not None:
            given.append("at_least/at_most")
        if len(given) != 1:
            raise ValueError("give exactly one condition: pattern, one_of, equals, at_least/at_most, or free_mail")
        if self.free_mail is not None and self.field != "email_domain":
            raise ValueError("free_mail only applies to field: email_domain")
        return self


class FitRule(Condition):
    """Points for who the lead is; negative points for who it should not be (students, competitors)."""

    name: str
    points: float


class ActivityRule(Strict):
    """Points per matching activity, decayed by age and capped; negative points make a negative signal."""

    name: str
    activity: ActivityType
    points: float
    target_contains: str | None = Field(default=None, description="Only activities whose target contains this.")
    cap: float | None = Field(default=None, description="Largest total (in absolute value) this rule can give.")
    decays: bool = Field(default=True, description="false: an old activity counts as much as a new one.")

    @model_validator(mode="after")
    def _cap_sign(self) -> ActivityRule:
        if self.cap is not None and (self.cap == 0 or (self.cap > 0) != (self.points > 0)):
            raise ValueError("cap must be non-zero and have the same sign as points")
        return self


class FrequencyRule(Strict):
    """Points once when at least N matching activities happened within the last D days."""

    name: str
    activity: ActivityType
    target_contains: str | None = None
    at_least: int = Field(ge=1)
    within_days: float = Field(gt=0)
    points: float


class InactivityRule(Strict):
    """Points (usually negative) once the lead has had no activity for `days` days."""

    name: str
    days: float = Field(gt=0)
    points: float


class TotalWeights(Strict):
    fit: float = Field(default=1.0, ge=0)
    engagement: float = Field(default=1.0, ge=0)


# Requalify marks each activity row with one bit per condition (leads.activity_totals); hand raises and
# sales outcomes take up to 10 more of its 30.
MAX_ACTIVITY_CONDITIONS = 20


class ScoringConfig(Strict):
    version: str = Field(description="Rule-set version, stamped on every stage transition.")
    half_life_days: float | None = Field(
        default=None, gt=0, description="Engagement halves in value after this many days; empty: no decay."
    )
    fit: list[FitRule] = []
    engagement: list[ActivityRule] = []
    frequency: list[FrequencyRule] = []
    inactivity: list[InactivityRule] = []
    total: TotalWeights = TotalWeights()

    @model_validator(mode="after")
    def _unique_names(self) -> ScoringConfig:
        rules: list[FitRule | ActivityRule | FrequencyRule | InactivityRule] = [
            *self.fit,
            *self.engagement,
            *self.frequency,
            *self.inactivity,
        ]
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        counted: list[ActivityRule | FrequencyRule] = [*self.engagement, *self.frequency]
        conditions = {(r.activity, (r.target_contains or "").lower()) for r in counted}
        if len(conditions) > MAX_ACTIVITY_CONDITIONS:
            raise ValueError(
                f"engagement and frequency rules use {len(conditions)} different activity/target_contains "
                f"pairs; at most {MAX_ACTIVITY_CONDITIONS} are supported (rules may share a pair)"
            )
        return self


class HandRaiseGate(Strict):
    """Who a hand raise moves straight into the stage; anyone else is held for review one stage below.

    The default holds a free-mail address with a negative fit (a student asking for a demo) for
    review instead of handing it to sales. Disqualified leads never pass: disqualifying wins first.
    """

    min_fit: float | None = Field(default=None, description="Every hand-raiser needs at least this fit.")
    free_mail_min_fit: float | None = Field(
        default=0, description="A hand-raiser on a free-mail address needs at least this fit; null: no check."
    )
    min_bant_known: int | None = Field(default=None, ge=1, le=4, description="How many BANT fields must be known.")
    on_hold: Literal["review", "ignore"] = Field(
        default="review",
        description="review: a held lead moves one stage below (with the reason), where sales ops look at it; "
        "ignore: the hand raise does not count for this stage.",
    )


OPEN_GATE = HandRaiseGate(free_mail_min_fit=None)  # `hand_raise_gate: null`: every hand raise counts


class StageRule(Strict):
    """Entry condition: every threshold and BANT condition given holds, or a hand raise that passes the gate."""

    min_score: float | None = None
    min_fit: float | None = None
    min_engagement: float | None = None
    bant: dict[BantField, Literal["known"] | list[str]] = Field(
        default_factory=dict, description='Per BANT field: "known", or the accepted values (case-insensitive).'
    )
    min_bant_known: int | None = Field(default=None, ge=1, le=4, description="How many BANT fields must be known.")
    hand_raise: list[ActivityType] = []
    hand_raise_gate: HandRaiseGate = Field(
        default_factory=HandRaiseGate, description="Who a hand raise moves here directly; null: everyone."
    )

    @field_validator("hand_raise_gate", mode="before")
    @classmethod
    def _open_gate(cls, value: Any) -> Any:
        return OPEN_GATE if value is None else value

    @model_validator(mode="after")
    def _has_condition(self) -> StageRule:
        if not self.has_thresholds and not self.hand_raise:
            raise ValueError("a stage needs at least one of min_score, min_fit, min_engagement, hand_raise")
        return self

    @property
    def has_thresholds(self) -> bool:
        values = (self.min_score, self.min_fit, self.min_engagement, self.min_bant_known)
        return any(v is not None for v in values) or bool(self.bant)


class StagesConfig(Strict):
    """Entry rules for the stages that scoring can reach; `customer` comes from closed deals."""

    prospect: StageRule
    hot_prospect: StageRule
    mql: StageRule
    sql: StageRule

    def ordered(self) -> list[tuple[Stage, StageRule]]:
        return [
            (Stage.prospect, self.prospect),
            (Stage.hot_prospect, self.hot_prospect),
            (Stage.mql, self.mql),
            (Stage.sql, self.sql),
        ]


class RecycleConfig(Strict):
    """The only ways back down the funnel; a recycled lead qualifies again on activity after recycling."""

    mql_below_score: float | None = Field(
        default=None, description="An MQL whose (decayed) score falls below this is recycled."
    )
    on_sales_rejection: bool = Field(default=True, description="A sales_rejected activity recycles an SQL.")
    on_deal_lost: bool = Field(default=True, description="A deal_lost activity recycles an SQL.")


class DisqualifyConfig(Strict):
    """Leads that must never reach sales: matching any condition, or disqualified by sales."""

    when: list[Condition] = []
    on_sales_disqualified: bool = True


PredictiveField = Literal[
    "industry", "country", "company_size_band", "title_seniority", "email_kind", "budget", "authority", "need", "timing"
]  # fmt: skip


class CountFeature(Strict):
    """How many activities of one type (optionally on one target) a lead had, binned 0 / 1–2 / 3–5 / 6+."""

    activity: ActivityType
    target_contains: str | None = None

    @property
    def name(self) -> str:
        return f"{self.activity.value} {self.target_contains}" if self.target_contains else self.activity.value


class PredictiveConfig(Strict):
    """The learned baseline: naive Bayes over profile fields and activity counts, trained on won/lost leads."""

    fields: list[PredictiveField] = ["industry", "country", "company_size_band", "title_seniority", "email_kind"]
    activity_counts: list[CountFeature] = Field(
        default=[
            *("page_view", "email_open", "email_click", "download", "webinar", "form_submit"),
            {"activity": "page_view", "target_contains": "/pricing"},
        ],
        validate_default=True,
        description="Activity types (or {activity, target_contains}) whose counts are features.",
    )
    store: bool = Field(default=False, description="true: `leadflow backtest` stores the probability on every lead.")

    @field_validator("activity_counts", mode="before")
    @classmethod
    def _plain_types(cls, value: Any) -> Any:
        """`page_view` is short for `{activity: page_view}`."""
        return [{"activity": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _unique(self) -> PredictiveConfig:
        names = [*self.fields, *(c.name for c in self.activity_counts)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features must be unique; repeated: {', '.join(dupes)}")
        return self
