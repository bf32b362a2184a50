"""Score parts from the rules: fit from who the lead is, engagement from what it did and when.

Engagement comes from per-lead activity totals (`leadflow.leads.scoring.totals`: every rule's decayed sum,
every frequency window's count, the times of hand raises and sales outcomes), added up in numpy
from the raw activity rows. Python then applies points and caps to those few numbers per lead; the
requalify batch does the same arithmetic on whole arrays (`leadflow.leads.scoring.arrays`). Fit depends only
on a handful of profile fields that repeat across leads, so it is memoised per distinct value.

Scores are rounded to cents with `round2` (x·100 to the nearest integer, ties to even, ÷100): the
same operations numpy performs, so a score computed per lead and one computed per array agree to
the last bit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from leadflow.leads.config.scoring import (
    FREE_MAIL_DOMAINS,
    ActivityRule,
    Condition,
    FrequencyRule,
    ScoringConfig,
    StagesConfig,
)
from leadflow.leads.db.models import Activity, ActivityType
from leadflow.leads.scoring.totals import ActivityTotals, TotalsQuery

# Sales outcomes whose latest time the engine needs per lead, in this column order.
OUTCOME_TYPES: tuple[ActivityType, ...] = (
    ActivityType.deal_won,
    ActivityType.sales_disqualified,
    ActivityType.sales_rejected,
    ActivityType.deal_lost,
)


class Contribution(NamedTuple):
    """One rule's share of a score, for explanations and handoffs (a tuple: cheap at a million leads)."""

    rule: str
    part: str  # "fit" | "engagement"
    points: float
    matched: float = 1  # matching activities (decayed sum for decaying rules)
    capped: bool = False


@dataclass(slots=True)
class LeadSignals:
    """What the activity says about one lead, besides points: hand raises, outcomes, timing."""

    hand_raises: dict[ActivityType, datetime] = field(default_factory=dict)
    outcomes: dict[ActivityType, datetime] = field(default_factory=dict)
    frequency_lapses_at: datetime | None = None  # when a met frequency rule may stop being met
    quiet_since: datetime | None = None  # last activity seen (or creation): inactivity counts from here


@dataclass(slots=True)
class ScoreParts:
    fit: float
    engagement: float
    total: float
    contributions: tuple[Contribution, ...] = ()
    positive: float = 0.0  # decaying engagement above zero (for rescore bounds)
    negative: float = 0.0  # decaying engagement below zero
    signals: LeadSignals = field(default_factory=LeadSignals)
    disqualified_by: str | None = None

    @property
    def hand_raise_types(self) -> frozenset[ActivityType]:
        return frozenset(self.signals.hand_raises)


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def condition_matches(condition: Condition, value: Any, pattern: re.Pattern[str] | None = None) -> bool:
    """Whether one lead field value meets a fit or disqualify condition; an empty field never does."""
    if value is None or value == "":
        return False
    if condition.free_mail is not None:
        return (str(value).lower() in FREE_MAIL_DOMAINS) == condition.free_mail
    if condition.pattern is not None:
        return (pattern or re.compile(condition.pattern)).search(str(value)) is not None
    if condition.one_of is not None:
        return str(value).strip().lower() in {v.lower() for v in condition.one_of}
    if condition.equals is not None:
        return str(value).strip().lower() == condition.equals.lower()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return (condition.at_least is None or number >= condition.at_least) and (
        condition.at_most is None or number <= condition.at_most
    )


def field_value(lead: Any, name: str) -> Any:
    return email_domain(lead.email) if name == "email_domain" else getattr(lead, name)


def _getter(name: str) -> Any:
    """`field_value` for one field, as a function of the lead."""
    return (lambda lead: email_domain(lead.email)) if name == "email_domain" else attrgetter(name)


class Scorer:
    """Compiled rules for one rule set and one database dialect; build once per run."""

    def __init__(
        self,
        scoring: ScoringConfig,
        stages: StagesConfig,
        *,
        dialect: str = "sqlite",
        disqualify: Sequence[Condition] = (),
    ) -> None:
        self.scoring = scoring
        self.dialect = dialect
        self.disqualify = tuple(disqualify)
        self.hand_raise_types: tuple[ActivityType, ...] = tuple(
            sorted({t for _, rule in stages.ordered() for t in rule.hand_raise})
        )
        self._patterns = {
            id(c): re.compile(c.pattern) for c in [*scoring.fit, *self.disqualify] if c.pattern is not None
        }
        # Each rule reads one field: memoise per field value, so a million leads cost a few
        # thousand rule evaluations and one dict lookup per field per lead.
        self._fields = tuple(sorted({c.field for c in [*scoring.fit, *self.disqualify]}))
        self._by_value: dict[str, dict[Any, tuple[tuple[Contribution, ...], float, str | None]]] = {
            name: {} for name in self._fields
        }
        half_life = scoring.half_life_days
        self.decay_rate = math.log(2) / half_life if half_life else 0.0  # per day
        # Plain tuples of what `parts` reads per lead (pydantic attribute access costs at a million leads).
        self._getters = tuple((name, _getter(name)) for name in self._fields)
        self._engagement = tuple((r.points, r.cap, bool(r.decays and self.decay_rate)) for r in scoring.engagement)
        self._frequency = tuple((r.at_least, r.points, timedelta(days=r.within_days)) for r in scoring.frequency)
        self._inactivity = tuple((timedelta(days=r.days), r.points) for r in scoring.inactivity)
        self.mark_kinds = tuple(sorted({k.value for k in (*self.hand_raise_types, *OUTCOME_TYPES)}))
        self.totals_query = TotalsQuery(
            engagement=scoring.engagement,
            frequency=scoring.frequency,
            mark_kinds=self.mark_kinds,
            decay_rate=self.decay_rate,
            dialect=dialect,
        )

    @property
    def lead_fields(self) -> tuple[str, ...]:
        """The lead columns the fit and disqualify rules read."""
        return tuple(sorted({"email" if name == "email_domain" else name for name in self._fields}))

    def totals(self, connection: Any, now: datetime, *lead_filter: ColumnElement[bool]) -> ActivityTotals:
        """The activity totals at `now` of the leads `lead_filter` picks (activity after `now` never counts,
        so the same call replays history for backtests)."""
        return self.totals_query.collect(connection, now, *lead_filter)

    # --- Python, per lead --------------------------------------------------------------------------

    def _field_verdict(self, name: str, value: Any) -> tuple[tuple[Contribution, ...], float, str | None]:
        """Fit contributions, their sum, and a disqualifying reason, for one value of one field."""
        cache = self._by_value[name]
        verdict = cache.get(value)
        if verdict is None:
            contributions = tuple(
                Contribution(rule=r.name, part="fit", points=r.points)
                for r in self.scoring.fit
                if r.field == name and condition_matches(r, value, self._patterns.get(id(r)))
            )
            disqualified = next(
                (
                    f"{c.field} {describe_condition(c)}"
                    for c in self.disqualify
                    if c.field == name and condition_matches(c, value, self._patterns.get(id(c)))
                ),
                None,
            )
            verdict = cache[value] = (contributions, sum(c.points for c in contributions), disqualified)
        return verdict

    def fit(self, lead: Any) -> tuple[tuple[Contribution, ...], str | None]:
        """Fit contributions (in rule order) and the disqualifying condition, if any."""
        found: list[Contribution] = []
        disqualified = None
        for name in self._fields:
            contributions, _, reason = self._field_verdict(name, field_value(lead, name))
            found += contributions
            disqualified = disqualified or reason
        order = {r.name: i for i, r in enumerate(self.scoring.fit)}
        return tuple(sorted(found, key=lambda c: order[c.rule])), disqualified

    def _fit_points(self, lead: Any) -> tuple[float, str | None]:
        total, disqualified = 0.0, None
        by_value = self._by_value
        for name, get in self._getters:
            value = get(lead)
            verdict = by_value[name].get(value)
            if verdict is None:
                verdict = self._field_verdict(name, value)
            total += verdict[1]
            disqualified = disqualified or verdict[2]
        return total, disqualified

    def engagement(self, amounts: Sequence[float]) -> list[tuple[ActivityRule, Contribution]]:
        """Points per engagement rule from its (decayed) activity count, limited by the rule's cap."""
        out = []
        for rule, amount in zip(self.scoring.engagement, amounts, strict=True):
            if amount > 1e-9:
                raw = rule.points * amount
                cap = rule.cap
                capped = cap is not None and (raw > cap if cap > 0 else raw < cap)
                points = round2(cap if cap is not None and capped else raw)
                out.append((rule, Contribution(rule.name, "engagement", points, round(amount, 3), capped)))
        return out

    def parts(self, lead: Any, row: Sequence[Any] | None, now: datetime, *, detail: bool = True) -> ScoreParts:
        """Score parts of one lead from its `ActivityTotals.row` (None when it has no activity).

        `detail=False` skips building the per-rule contributions: requalify at a million leads
        needs only the sums; explanations and handoffs ask for the detail. Both take the same
        arithmetic in the same order, so they agree to the last bit.
        """
        if detail:
            fit_contributions, disqualified = self.fit(lead)
            fit_sum = self._fit_points(lead)[0]  # the per-field order requalify adds in
            contributions: list[Contribution] | None = list(fit_contributions)
        else:
            fit_sum, disqualified = self._fit_points(lead)
            contributions = None
        positive = negative = steady = 0.0
        hand_raises: dict[ActivityType, datetime] = {}
        outcomes: dict[ActivityType, datetime] = {}
        lapse: datetime | None = None
        last_activity = lead.last_activity_at
        if row is not None:
            n_rules = len(self._engagement)
            if contributions is not None:
                for rule, contribution in self.engagement([v or 0.0 for v in row[1 : 1 + n_rules]]):
                    contributions.append(contribution)
                    if not (rule.decays and self.decay_rate):
                        steady += contribution.points
                    elif contribution.points > 0:
                        positive += contribution.points
                    else:
                        negative += contribution.points
            else:  # the same arithmetic as `engagement`, without building contributions
                for (per, cap, decays), amount in zip(self._engagement, row[1 : 1 + n_rules]):  # noqa: B905
                    if amount is None or not amount > 1e-9:
                        continue
                    raw = per * amount
                    if cap is not None and (raw > cap if cap > 0 else raw < cap):
                        raw = cap
                    points = round2(raw)
                    if not decays:
                        steady += points
                    elif points > 0:
                        positive += points
                    else:
                        negative += points
            at = 1 + n_rules
            for (at_least, points, within), frequency_rule in zip(self._frequency, self.scoring.frequency):  # noqa: B905
                count, oldest = int(row[at] or 0), row[at + 1]
                at += 2
                if count >= at_least:
                    if contributions is not None:
                        contributions.append(Contribution(frequency_rule.name, "engagement", points, count))
                    steady += points
                    ends = _as_datetime(oldest) + within
                    lapse = ends if lapse is None or ends < lapse else lapse
            latest = row[at]  # the latest time per hand raise / outcome type
            if latest:
                for kind in self.hand_raise_types:
                    if kind.value in latest:
                        hand_raises[kind] = latest[kind.value]
                for kind in OUTCOME_TYPES:
                    if kind.value in latest:
                        outcomes[kind] = latest[kind.value]
            last_activity = _as_datetime(row[at + 1])
        since = last_activity or lead.created_at
        if since is not None:
            quiet = now - since
            for (days, points), inactivity_rule in zip(self._inactivity, self.scoring.inactivity):  # noqa: B905
                if quiet >= days:
                    if contributions is not None:
                        contributions.append(Contribution(inactivity_rule.name, "engagement", points))
                    steady += points
        fit = round2(fit_sum)
        engagement = round2(positive + negative + steady)
        weights = self.scoring.total
        return ScoreParts(
            fit,
            engagement,
            round2(weights.fit * fit + weights.engagement * engagement),
            tuple(contributions) if contributions is not None else (),
            positive,
            negative,
            LeadSignals(hand_raises, outcomes, lapse, since),
            disqualified,
        )


def round2(value: float) -> float:
    """To cents: value·100 to the nearest integer (ties to even), ÷100 — numpy's `rint(x*100)/100`, bit for bit."""
    return round(value * 100.0) / 100.0


def describe_condition(condition: Condition) -> str:
    if condition.free_mail is not None:
        return "is a free-mail domain" if condition.free_mail else "is a company domain"
    if condition.pattern is not None:
        return f"matches {condition.pattern!r}"
    if condition.one_of is not None:
        return "is one of " + ", ".join(condition.one_of)
    if condition.equals is not None:
        return f"is {condition.equals}"
    bounds = []
    if condition.at_least is not None:
        bounds.append(f"≥ {condition.at_least:g}")
    if condition.at_most is not None:
        bounds.append(f"≤ {condition.at_most:g}")
    return " and ".join(bounds)


def _matches(rule: ActivityRule | FrequencyRule | Any) -> ColumnElement[bool]:
    """The rule's type, and its target text case-insensitively (any dialect)."""
    condition = col(Activity.type) == rule.activity.value
    if rule.target_contains:
        condition = condition & col(Activity.target).icontains(rule.target_contains, autoescape=True)
    return condition


def _as_datetime(value: Any) -> datetime:
    """SQLite returns aggregated timestamps as text; PostgreSQL as datetimes."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))
