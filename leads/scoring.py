"""Score parts from the rules: fit from who the lead is, engagement from what it did and when.

Engagement is computed set-based: one GROUP BY over the activity of a batch of leads gives, per
lead, every rule's decayed sum, every frequency window's count, and the times of hand raises and
sales outcomes. Python then applies points and caps to those few numbers per lead. Fit depends only
on a handful of profile fields that repeat across leads, so it is memoised per distinct profile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Float, Select, String, and_, case, func, literal, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from leads.models import Activity, ActivityType
from leads.scoring_config import FREE_MAIL_DOMAINS, ActivityRule, Condition, FrequencyRule, ScoringConfig, StagesConfig

# Sales outcomes whose latest time the engine needs per lead, in this column order.
OUTCOME_TYPES: tuple[ActivityType, ...] = (
    ActivityType.deal_won,
    ActivityType.sales_disqualified,
    ActivityType.sales_rejected,
    ActivityType.deal_lost,
)
JULIAN_UNIX_EPOCH = 2440587.5


class Contribution(NamedTuple):
    """One rule's share of a score, for explanations and handoffs (a tuple: cheap at a million leads)."""

    rule: str
    part: str  # "fit" | "engagement"
    points: float
    count: float = 1  # matching activities (decayed sum for decaying rules)
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

    # --- SQL -------------------------------------------------------------------------------------

    def _age_days(self, now: datetime) -> ColumnElement[float]:
        if self.dialect == "postgresql":
            return func.extract("epoch", literal(now) - Activity.occurred_at) / 86400.0
        return literal(_julian(now), Float) - func.julianday(Activity.occurred_at)

    def _weight(self, rule: ActivityRule, now: datetime) -> ColumnElement[float]:
        if not (rule.decays and self.decay_rate):
            return literal(1.0, Float)
        return func.exp(literal(-self.decay_rate, Float) * self._age_days(now))

    def activity_query(self, now: datetime, *lead_filter: ColumnElement[bool]) -> Select[Any]:
        """Per lead: decayed sum per engagement rule, count and oldest time per frequency window,
        latest time per hand raise and sales outcome, and the latest activity of all.

        Activity after `now` never counts, so the same query replays history for backtests.
        """
        columns: list[Any] = [Activity.lead_id]
        for rule in self.scoring.engagement:
            columns.append(func.sum(case((_matches(rule), self._weight(rule, now)), else_=0.0)))
        for rule in self.scoring.frequency:
            # Strictly within: at exactly oldest + within_days the oldest no longer counts (the lapse time).
            recent = and_(_matches(rule), Activity.occurred_at > now - timedelta(days=rule.within_days))
            columns.append(func.sum(case((recent, 1), else_=0)))
            columns.append(_raw(func.min(case((recent, Activity.occurred_at), else_=None))))
        for kind in (*self.hand_raise_types, *OUTCOME_TYPES):
            columns.append(_raw(func.max(case((Activity.type == kind.value, Activity.occurred_at), else_=None))))
        columns.append(_raw(func.max(Activity.occurred_at)))
        return select(*columns).where(Activity.occurred_at <= now, *lead_filter).group_by(Activity.lead_id)

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
        for name in self._fields:
            _, points, reason = self._field_verdict(name, field_value(lead, name))
            total += points
            disqualified = disqualified or reason
        return total, disqualified

    def engagement(self, amounts: Sequence[float]) -> list[tuple[ActivityRule, Contribution]]:
        """Points per engagement rule from its (decayed) activity count, limited by the rule's cap."""
        out = []
        for rule, amount in zip(self.scoring.engagement, amounts, strict=True):
            if amount > 1e-9:
                raw = rule.points * amount
                cap = rule.cap
                capped = cap is not None and (raw > cap if cap > 0 else raw < cap)
                points = round(cap if capped else raw, 2)  # type: ignore[arg-type]
                out.append((rule, Contribution(rule.name, "engagement", points, round(amount, 3), capped)))
        return out

    def parts(self, lead: Any, row: Sequence[Any] | None, now: datetime, *, detail: bool = True) -> ScoreParts:
        """Score parts of one lead from its row of `activity_query` (None when it has no activity).

        `detail=False` skips building the per-rule contributions: requalify at a million leads
        needs only the sums; explanations and handoffs ask for the detail.
        """
        if detail:
            fit_contributions, disqualified = self.fit(lead)
            fit_sum = sum(c.points for c in fit_contributions)
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
            n_rules = len(self.scoring.engagement)
            for rule, contribution in self.engagement([v or 0.0 for v in row[1 : 1 + n_rules]]):
                if contributions is not None:
                    contributions.append(contribution)
                if not (rule.decays and self.decay_rate):
                    steady += contribution.points
                elif contribution.points > 0:
                    positive += contribution.points
                else:
                    negative += contribution.points
            at = 1 + n_rules
            for rule in self.scoring.frequency:
                count, oldest = int(row[at] or 0), row[at + 1]
                at += 2
                if count >= rule.at_least:
                    if contributions is not None:
                        contributions.append(Contribution(rule.name, "engagement", rule.points, count))
                    steady += rule.points
                    ends = _as_datetime(oldest) + timedelta(days=rule.within_days)
                    lapse = ends if lapse is None or ends < lapse else lapse
            for kind in self.hand_raise_types:
                if row[at] is not None:
                    hand_raises[kind] = _as_datetime(row[at])
                at += 1
            for kind in OUTCOME_TYPES:
                if row[at] is not None:
                    outcomes[kind] = _as_datetime(row[at])
                at += 1
            last_activity = _as_datetime(row[at])
        since = last_activity or lead.created_at
        if since is not None:
            quiet = now - since
            for rule in self.scoring.inactivity:
                if quiet >= timedelta(days=rule.days):
                    if contributions is not None:
                        contributions.append(Contribution(rule.name, "engagement", rule.points))
                    steady += rule.points
        fit = round(fit_sum, 2)
        engagement = round(positive + negative + steady, 2)
        weights = self.scoring.total
        return ScoreParts(
            fit=fit,
            engagement=engagement,
            total=round(weights.fit * fit + weights.engagement * engagement, 2),
            contributions=tuple(contributions) if contributions is not None else (),
            positive=positive,
            negative=negative,
            signals=LeadSignals(hand_raises, outcomes, lapse, since),
            disqualified_by=disqualified,
        )


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


def _matches(rule: ActivityRule | FrequencyRule) -> ColumnElement[bool]:
    condition = Activity.type == rule.activity.value
    if rule.target_contains:
        # ILIKE on PostgreSQL, LIKE (case-insensitive for ASCII) on SQLite: the same matches on both.
        condition = condition & Activity.target.icontains(rule.target_contains, autoescape=True)  # type: ignore[union-attr]
    return condition


def _raw(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Skip SQLAlchemy's per-value datetime processing (slow at a million rows); _as_datetime parses."""
    return type_coerce(column, String)


def _julian(naive_utc: datetime) -> float:
    epoch = datetime(1970, 1, 1)
    return (naive_utc - epoch).total_seconds() / 86400.0 + JULIAN_UNIX_EPOCH


def _as_datetime(value: Any) -> datetime:
    """SQLite returns aggregated timestamps as text; PostgreSQL as datetimes."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))
