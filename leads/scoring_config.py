"""Scoring and stage rules of the workspace config: what makes a lead fit, engaged, an MQL, an SQL.

Kept apart from the rest of the config because it is the part marketing ops tune most, and the
part the scoring engine, explanations and backtests read.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leads.models import ActivityType, Stage

LeadField = Literal["title", "industry", "company_size", "country", "email_domain", "company"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitRule(Strict):
    """Points for who the lead is. Exactly one condition: pattern, one_of, equals, at_least/at_most."""

    name: str
    field: LeadField
    points: float
    pattern: str | None = Field(default=None, description="Regular expression searched in the field.")
    one_of: list[str] | None = Field(default=None, description="Case-insensitive set of accepted values.")
    equals: str | None = None
    at_least: float | None = None
    at_most: float | None = None

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
    def _one_condition(self) -> FitRule:
        given = [k for k in ("pattern", "one_of", "equals") if getattr(self, k) is not None]
        if self.at_least is not None or self.at_most is not None:
            given.append("at_least/at_most")
        if len(given) != 1:
            raise ValueError("give exactly one condition: pattern, one_of, equals, or at_least/at_most")
        return self


class ActivityRule(Strict):
    """Points per matching activity, capped; negative points make a negative signal."""

    name: str
    activity: ActivityType
    points: float
    target_contains: str | None = Field(default=None, description="Only activities whose target contains this.")
    cap: float | None = Field(default=None, description="Largest total (in absolute value) this rule can give.")

    @model_validator(mode="after")
    def _cap_sign(self) -> ActivityRule:
        if self.cap is not None and (self.cap == 0 or (self.cap > 0) != (self.points > 0)):
            raise ValueError("cap must be non-zero and have the same sign as points")
        return self


class TotalWeights(Strict):
    fit: float = 1.0
    engagement: float = 1.0


class ScoringConfig(Strict):
    version: str = Field(description="Rule-set version, stamped on every stage transition.")
    fit: list[FitRule] = []
    engagement: list[ActivityRule] = []
    total: TotalWeights = TotalWeights()

    @model_validator(mode="after")
    def _unique_names(self) -> ScoringConfig:
        names = [r.name for r in [*self.fit, *self.engagement]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return self


class StageRule(Strict):
    """Entry condition: every threshold given is met, or any hand-raise event happened."""

    min_score: float | None = None
    min_fit: float | None = None
    min_engagement: float | None = None
    hand_raise: list[ActivityType] = []

    @model_validator(mode="after")
    def _has_condition(self) -> StageRule:
        if self.min_score is None and self.min_fit is None and self.min_engagement is None and not self.hand_raise:
            raise ValueError("a stage needs at least one of min_score, min_fit, min_engagement, hand_raise")
        return self

    @property
    def has_thresholds(self) -> bool:
        return any(v is not None for v in (self.min_score, self.min_fit, self.min_engagement))


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
