"""Score parts from the rules: fit from who the lead is, engagement from what it did.

Engagement is counted set-based: one GROUP BY over a shard's activity gives every rule's count
for every lead, so the database does the heavy lifting and Python only applies points and caps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Select, case, func, select

from leads.scoring_config import ActivityRule, FitRule, ScoringConfig, StagesConfig
from leads.models import Activity, ActivityType, Lead


@dataclass(frozen=True)
class Contribution:
    """One rule's share of a score, for explanations and handoffs."""

    rule: str
    part: str  # "fit" | "engagement"
    points: float
    count: int = 1
    capped: bool = False


@dataclass(frozen=True)
class ScoreParts:
    fit: float
    engagement: float
    total: float
    contributions: tuple[Contribution, ...] = ()
    hand_raises: frozenset[ActivityType] = field(default_factory=frozenset)


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


class Scorer:
    """Compiled rules for one rule set; build once per run."""

    def __init__(self, scoring: ScoringConfig, stages: StagesConfig) -> None:
        self.scoring = scoring
        self.hand_raise_types: tuple[ActivityType, ...] = tuple(
            sorted({t for _, rule in stages.ordered() for t in rule.hand_raise})
        )

    @cached_property
    def _patterns(self) -> dict[str, re.Pattern[str]]:
        return {r.name: re.compile(r.pattern) for r in self.scoring.fit if r.pattern is not None}

    def counts_query(self, lo: int, hi: int) -> Select[Any]:
        """Per lead in [lo, hi]: one count column per engagement rule, then one per hand-raise type."""
        columns: list[Any] = [Activity.lead_id]
        for i, rule in enumerate(self.scoring.engagement):
            columns.append(func.sum(case((_matches(rule), 1), else_=0)).label(f"r{i}"))
        for j, kind in enumerate(self.hand_raise_types):
            columns.append(func.sum(case((Activity.type == kind.value, 1), else_=0)).label(f"h{j}"))
        return select(*columns).where(Activity.lead_id.between(lo, hi)).group_by(Activity.lead_id)

    def fit(self, lead: Lead) -> list[Contribution]:
        return [
            Contribution(rule=r.name, part="fit", points=r.points)
            for r in self.scoring.fit
            if self._fit_matches(r, lead)
        ]

    def _fit_matches(self, rule: FitRule, lead: Lead) -> bool:
        value: Any = email_domain(lead.email) if rule.field == "email_domain" else getattr(lead, rule.field)
        if value is None:
            return False
        if rule.pattern is not None:
            return self._patterns[rule.name].search(str(value)) is not None
        if rule.one_of is not None:
            return str(value).strip().lower() in {v.lower() for v in rule.one_of}
        if rule.equals is not None:
            return str(value).strip().lower() == rule.equals.lower()
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return (rule.at_least is None or number >= rule.at_least) and (rule.at_most is None or number <= rule.at_most)

    def engagement(self, counts: tuple[int, ...]) -> list[Contribution]:
        """Points per rule from its count, limited by the rule's cap."""
        out = []
        for rule, count in zip(self.scoring.engagement, counts, strict=True):
            if not count:
                continue
            raw = rule.points * count
            capped = rule.cap is not None and abs(raw) > abs(rule.cap)
            out.append(
                Contribution(
                    rule=rule.name, part="engagement", points=rule.cap if capped else raw, count=count, capped=capped
                )  # type: ignore[arg-type]
            )
        return out

    def parts(self, lead: Lead, row: tuple[int, ...] | None) -> ScoreParts:
        """Score parts of one lead from its row of `counts_query` (None when it has no activity)."""
        n_rules = len(self.scoring.engagement)
        rule_counts = tuple(int(c or 0) for c in row[:n_rules]) if row else (0,) * n_rules
        raised = (
            frozenset(t for t, c in zip(self.hand_raise_types, row[n_rules:], strict=True) if c) if row else frozenset()
        )
        contributions = [*self.fit(lead), *self.engagement(rule_counts)]
        fit = sum(c.points for c in contributions if c.part == "fit")
        engagement = sum(c.points for c in contributions if c.part == "engagement")
        weights = self.scoring.total
        return ScoreParts(
            fit=fit,
            engagement=engagement,
            total=round(weights.fit * fit + weights.engagement * engagement, 2),
            contributions=tuple(contributions),
            hand_raises=raised,
        )


def _matches(rule: ActivityRule) -> Any:
    condition = Activity.type == rule.activity.value
    if rule.target_contains:
        # Case-insensitive on every backend (LIKE is case-blind on SQLite, case-sensitive on PostgreSQL).
        target = func.lower(Activity.target)
        condition = condition & target.contains(rule.target_contains.lower(), autoescape=True)
    return condition
