"""When a lead must be scored again even without new activity.

Scores change with time alone: engagement decays, frequency windows close, inactivity penalties
start. A lead's stage can only change by time if its score crosses a stage threshold or the MQL
floor, so requalify stores the earliest moment that could happen and an incremental run rescores
exactly the leads that are due. The bounds are conservative (never late): decaying positive points
are assumed to fall at full speed and negative ones to stay, for a downward crossing; and the other
way round for an upward one. Caps only slow decay down, so they keep the bounds safe.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Stage, funnel_rank
from leadflow.leads.scoring.rules import ScoreParts
from leadflow.leads.scoring.totals import US_PER_DAY

FROZEN = {Stage.customer, Stage.disqualified}
# Scores are stored rounded to 0.01: aim a little past each threshold, so that at the scheduled
# moment the rounded score is clearly across it (and not exactly on it, which would not count).
MARGIN = 0.006


def after_days(now: datetime, days: float) -> datetime:
    """`now` plus `days`, floored to the microsecond (never late; numpy's `floor(days·µs/day)`, bit for bit)."""
    return now + timedelta(microseconds=math.floor(days * US_PER_DAY))


def _halvings_until(amount: float, target: float) -> float | None:
    """Half-lives until `amount` (decaying towards 0) has shrunk to `target` (same sign, smaller)."""
    if amount == 0 or target / amount >= 1:
        return 0.0
    if target / amount <= 0:
        return None
    return math.log2(amount / target)


def _crossing_days(steady: float, decaying: float, threshold: float, half_life: float, rising: bool) -> float | None:
    """Days until steady + decaying·2^(-t/h) crosses threshold (upward if rising), None if never."""
    if rising:
        if steady + decaying >= threshold:
            return 0.0
        if decaying >= 0 or steady <= threshold:
            return None  # only a negative part decaying towards 0 raises the score, and not far enough
        halvings = _halvings_until(-decaying, steady - threshold)
    else:
        if steady + decaying < threshold:
            return 0.0
        if decaying <= 0 or steady >= threshold:
            return None
        halvings = _halvings_until(decaying, threshold - steady)
    return None if halvings is None else halvings * half_life


def next_rescore_at(*, parts: ScoreParts, stage: Stage, config: WorkspaceConfig, now: datetime) -> datetime | None:
    """The earliest time the lead's stage could change without new activity, or None."""
    if stage in FROZEN:
        return None
    candidates: list[datetime] = []
    if parts.signals.frequency_lapses_at is not None:
        candidates.append(parts.signals.frequency_lapses_at)
    since = parts.signals.quiet_since
    if since is not None:
        # An inactivity rule not yet applied starts to apply `days` after the last activity.
        quiet = now - since
        candidates += [since + days for days in _inactivity_days(config) if quiet < days]
    half_life = config.scoring.half_life_days
    if half_life:
        candidates += _decay_crossings(parts, stage, config, now, half_life)
    return min(candidates) if candidates else None


_INACTIVITY: dict[int, tuple[Any, tuple[timedelta, ...]]] = {}


def _inactivity_days(config: WorkspaceConfig) -> tuple[timedelta, ...]:
    """The inactivity rules' periods, built once per rule set (read per lead)."""
    rules = config.scoring.inactivity
    cached = _INACTIVITY.get(id(rules))
    if cached is None or cached[0] is not rules:
        if len(_INACTIVITY) > 64:
            _INACTIVITY.clear()
        cached = _INACTIVITY[id(rules)] = (rules, tuple(timedelta(days=r.days) for r in rules))
    return cached[1]


def _decay_crossings(
    parts: ScoreParts, stage: Stage, config: WorkspaceConfig, now: datetime, half_life: float
) -> list[datetime]:
    weights = config.scoring.total
    score_steady = parts.total - weights.engagement * (parts.positive + parts.negative)
    eng_steady = parts.engagement - (parts.positive + parts.negative)
    days: list[float] = []
    floor = config.recycle.mql_below_score
    if stage == Stage.mql and floor is not None:
        # Lowest the score can be: positive part decaying, negative part staying.
        low = _crossing_days(
            score_steady + weights.engagement * parts.negative,
            weights.engagement * parts.positive,
            floor - MARGIN,
            half_life,
            False,
        )
        if low is not None:
            # 0: already at the floor but not below it after rounding; look again in a minute.
            days.append(low or 1 / 1440)
    if parts.negative >= 0:
        return [after_days(now, d) for d in days]  # only a decaying penalty can raise a score
    rank = funnel_rank(stage)
    for target, rule in config.stages.ordered():
        if funnel_rank(target) <= rank or not rule.has_thresholds:
            continue
        if rule.min_fit is not None and parts.fit < rule.min_fit:
            continue  # fit does not change with time
        # Highest the scores can be: negative part decaying, positive part staying.
        needed = [
            _crossing_days(
                score_steady + weights.engagement * parts.positive,
                weights.engagement * parts.negative,
                rule.min_score + MARGIN,
                half_life,
                True,
            )
            if rule.min_score is not None
            else 0.0,
            _crossing_days(eng_steady + parts.positive, parts.negative, rule.min_engagement + MARGIN, half_life, True)
            if rule.min_engagement is not None
            else 0.0,
        ]
        crossing = [d for d in needed if d is not None]
        if len(crossing) == len(needed) and max(crossing) > 0:
            days.append(max(crossing))  # 0: met already, blocked by what time can't change
    return [after_days(now, d) for d in days]
