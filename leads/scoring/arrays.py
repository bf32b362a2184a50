"""Score parts of a whole batch of leads at once, in numpy: the common case of a requalify run.

`Scorer.parts` scores one lead; at a million leads its Python costs several times the database's
work. This module does the same arithmetic on arrays — the same operations in the same order, so
the same bits (see `round2`) — for every lead of a batch: scores, forward stage moves by
thresholds, and the next rescore time (frequency windows, inactivity rules, decay crossings, in
exact microseconds). It says which leads still need the per-lead path: those with a hand raise or
a sales outcome, a disqualifying field, an MQL under the floor, a BANT rule to meet, or a recycled
stage. In a steady state that is a small share of the leads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Stage, funnel_rank
from leadflow.leads.scoring.rescore import MARGIN
from leadflow.leads.scoring.rules import ScoreParts, Scorer, email_domain
from leadflow.leads.scoring.stages import FROZEN, rule_met
from leadflow.leads.scoring.totals import NO_TIME, US_PER_DAY, ActivityTotals, micros, span_micros, times_to_micros


def round2(values: np.ndarray) -> np.ndarray:
    """`leadflow.leads.scoring.rules.round2` on arrays (+0.0 turns numpy's −0.0 into the 0.0 Python's round gives)."""
    return np.rint(values * 100.0) / 100.0 + 0.0


@dataclass
class LeadColumns:
    """The lead rows of a batch as columns (driver values; times as int64 µs, NO_TIME for none)."""

    ids: np.ndarray
    stages: list[str]
    stored: np.ndarray  # (n, 3) fit, engagement, total as stored
    since: np.ndarray  # last activity, else creation: where inactivity counts from without activity rows
    rescore: np.ndarray
    rescore_raw: list[Any]  # as stored, for the compare-and-set of the write
    scored: np.ndarray  # bool: scored before
    values: dict[str, Sequence[Any]]  # the fields the fit and disqualify rules read

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Any, ...]], names: Sequence[str]) -> LeadColumns:
        columns = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {n: () for n in names}

        def floats(name: str) -> np.ndarray:  # NOT NULL columns
            return np.fromiter(columns[name], dtype=np.float64, count=len(rows))

        return cls(
            ids=np.fromiter(columns["id"], dtype=np.int64, count=len(rows)),
            stages=list(columns["stage"]),
            stored=np.column_stack([floats("fit_score"), floats("engagement_score"), floats("score")])
            if rows
            else np.zeros((0, 3)),
            since=times_to_micros(columns["since"]),
            rescore=times_to_micros(columns["rescore_at"]),
            rescore_raw=list(columns["rescore_at"]),
            scored=np.fromiter(columns["scored"], dtype=bool, count=len(rows)),
            values={n: columns[n] for n in names},
        )


@dataclass
class BatchScores:
    fit: np.ndarray
    engagement: np.ndarray
    total: np.ndarray
    next_rescore: np.ndarray  # int64 µs, NO_TIME for none; meaningful where not per_lead
    per_lead: np.ndarray  # bool: score these with `Scorer.parts` and `decide` instead
    recycled: np.ndarray  # bool: in the recycled stage now
    moves: list[tuple[int, Stage, str]]  # (index, to stage, reason) of the forward moves decided here


def score_batch(
    scorer: Scorer, config: WorkspaceConfig, leads: LeadColumns, totals: ActivityTotals, now: datetime
) -> BatchScores:
    n = len(leads.ids)
    now_us = micros(now)
    group = totals.group_of(leads.ids)
    has = group >= 0
    at = np.where(has, group, 0)

    def per_lead_total(column: np.ndarray, none: Any) -> np.ndarray:
        """A column of the totals by lead of the batch; `none` for leads without activity."""
        return np.where(has, column[at], none) if len(totals.lead_ids) else np.full(n, none, dtype=column.dtype)

    # Fit: the memoised verdict per field value, added in the field order `Scorer._fit_points` uses.
    fit_sum = np.zeros(n)
    disqualified = np.zeros(n, dtype=bool)
    for name, _ in scorer._getters:
        column = [email_domain(e) for e in leads.values["email"]] if name == "email_domain" else leads.values[name]
        field_points, disqualifies = _field_tables(scorer, name, column)
        fit_sum = fit_sum + np.fromiter(map(field_points.__getitem__, column), dtype=np.float64, count=n)
        if disqualifies:
            disqualified |= np.fromiter(map(disqualifies.__contains__, column), dtype=bool, count=n)

    # Engagement, rule by rule as `Scorer.parts` adds it.
    positive, negative, steady = np.zeros(n), np.zeros(n), np.zeros(n)
    for r, (per, cap, decays) in enumerate(scorer._engagement):
        amount = per_lead_total(totals.sums[:, r], 0.0)
        raw = per * amount
        if cap is not None:
            raw = np.where(raw > cap if cap > 0 else raw < cap, float(cap), raw)
        earned = np.where(amount > 1e-9, round2(raw), 0.0)
        if not decays:
            steady = steady + earned
        else:
            positive = positive + np.where(earned > 0, earned, 0.0)
            negative = negative + np.where(earned > 0, 0.0, earned)
    lapse = np.full(n, NO_TIME, dtype=np.int64)
    for j, (at_least, points, within) in enumerate(scorer._frequency):
        met = per_lead_total(totals.counts[:, j], 0) >= at_least
        steady = steady + np.where(met, float(points), 0.0)
        lapse = _earliest(lapse, np.where(met, per_lead_total(totals.oldest[:, j], 0) + span_micros(within), NO_TIME))
    since = np.where(has, per_lead_total(totals.last, NO_TIME), leads.since)
    known = since != NO_TIME
    quiet = now_us - np.where(known, since, 0)
    upcoming = np.full(n, NO_TIME, dtype=np.int64)
    for days, points in scorer._inactivity:
        span = span_micros(days)
        steady = steady + np.where(known & (quiet >= span), float(points), 0.0)
        starts = np.where(known & (quiet < span), since + span, NO_TIME)
        upcoming = _earliest(upcoming, starts)
    fit = round2(fit_sum)
    engagement = round2(positive + negative + steady)
    weights = scorer.scoring.total
    total = round2(weights.fit * fit + weights.engagement * engagement)

    # Who needs the per-lead path: hand raises and outcomes, disqualifying fields, recycling, BANT rules.
    code = np.fromiter(map(_CODES.__getitem__, leads.stages), dtype=np.int64, count=n)
    rank, frozen = _RANK_OF_CODE[code], _FROZEN_CODE[code]
    recycled = code == _CODES[Stage.recycled.value]
    per_lead = disqualified | recycled
    if totals.marks:
        marked = np.zeros(len(totals.lead_ids), dtype=bool)
        marked[list(totals.marks)] = True
        per_lead |= has & marked[at]
    floor = config.recycle.mql_below_score
    if floor is not None:
        per_lead |= (code == _CODES[Stage.mql.value]) & (total < floor)
    per_lead &= ~frozen
    # Forward moves as `decide` makes them: the highest entry rule above the stage whose thresholds hold.
    moves: list[tuple[int, Stage, str]] = []
    undecided = ~per_lead & ~frozen
    after = code.copy()
    for stage, rule in reversed(config.stages.ordered()):
        if not rule.has_thresholds:
            continue  # a hand-raise-only rule: the leads with hand raises are on the per-lead path
        met = undecided & (rank < funnel_rank(stage))
        for value, minimum in ((total, rule.min_score), (fit, rule.min_fit), (engagement, rule.min_engagement)):
            if minimum is not None:
                met &= value >= minimum
        undecided &= ~met
        if rule.bant or rule.min_bant_known is not None:
            per_lead |= met  # BANT conditions: the lead's fields decide, one by one
            continue
        after[met] = _CODES[stage.value]
        for i in np.flatnonzero(met).tolist():
            reason = rule_met(rule, ScoreParts(float(fit[i]), float(engagement[i]), float(total[i])))
            moves.append((i, stage, reason or ""))
    upcoming = _earliest(lapse, upcoming)
    half_life = config.scoring.half_life_days
    if half_life:
        parts = (fit, engagement, total, positive, negative)
        upcoming = _earliest(upcoming, _decay_crossings(parts, after, config, now_us, float(half_life)))
    next_rescore = np.where(frozen, NO_TIME, upcoming)
    return BatchScores(fit, engagement, total, next_rescore, per_lead, recycled, moves)


# Stages as small integers, with their funnel rank and whether they are frozen, looked up per code.
_CODES = {s.value: i for i, s in enumerate(Stage)}
_RANK_OF_CODE = np.array([funnel_rank(s) for s in Stage], dtype=np.int64)
_FROZEN_CODE = np.array([s in FROZEN for s in Stage], dtype=bool)


def _decay_crossings(
    parts: tuple[np.ndarray, ...], code: np.ndarray, config: WorkspaceConfig, now_us: int, half_life: float
) -> np.ndarray:
    """`rescore._decay_crossings` on arrays: the earliest time decay alone could move each lead."""
    fit, engagement, total, positive, negative = parts
    rank, frozen = _RANK_OF_CODE[code], _FROZEN_CODE[code]
    we = config.scoring.total.engagement
    score_steady = total - we * (positive + negative)
    eng_steady = engagement - (positive + negative)
    out = np.full(len(fit), NO_TIME, dtype=np.int64)
    floor = config.recycle.mql_below_score
    if floor is not None:
        low = _crossing_days(score_steady + we * negative, we * positive, floor - MARGIN, half_life, rising=False)
        low = np.where(low == 0, 1 / 1440, low)  # already at the floor but not below it: look again in a minute
        out = _earliest(out, _after(now_us, np.where(code == _CODES[Stage.mql.value], low, np.nan)))
    falling_penalty = negative < 0  # only a decaying penalty can raise a score
    if not falling_penalty.any():
        return out
    for target, rule in config.stages.ordered():
        if not rule.has_thresholds:
            continue
        eligible = falling_penalty & (rank < funnel_rank(target)) & ~frozen
        if rule.min_fit is not None:
            eligible &= ~(fit < rule.min_fit)  # fit does not change with time
        zero = np.zeros(len(fit))
        by_score = (
            _crossing_days(score_steady + we * positive, we * negative, rule.min_score + MARGIN, half_life, rising=True)
            if rule.min_score is not None
            else zero
        )
        by_engagement = (
            _crossing_days(eng_steady + positive, negative, rule.min_engagement + MARGIN, half_life, rising=True)
            if rule.min_engagement is not None
            else zero
        )
        needed = np.maximum(by_score, by_engagement)  # NaN (never) wins, as it should
        eligible &= ~np.isnan(needed) & (needed > 0)  # 0: met already, blocked by what time can't change
        out = _earliest(out, _after(now_us, np.where(eligible, needed, np.nan)))
    return out


def _crossing_days(
    steady: np.ndarray, decaying: np.ndarray, threshold: float, half_life: float, *, rising: bool
) -> np.ndarray:
    """`leadflow.leads.scoring.rescore._crossing_days` on arrays; NaN for never."""
    if rising:
        already = steady + decaying >= threshold
        never = (decaying >= 0) | (steady <= threshold)
        amount, target = -decaying, steady - threshold
    else:
        already = steady + decaying < threshold
        never = (decaying <= 0) | (steady >= threshold)
        amount, target = decaying, threshold - steady
    out = np.full(len(steady), np.nan)
    todo = ~already & ~never
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = target / amount
    at_once = todo & ((amount == 0) | (ratio >= 1))
    halving = todo & ~at_once & ~(ratio <= 0)
    out[already | at_once] = 0.0
    logs = np.fromiter(map(math.log2, (amount[halving] / target[halving]).tolist()), dtype=np.float64)
    out[halving] = logs * half_life
    return out


def _after(now_us: int, days: np.ndarray) -> np.ndarray:
    """now + days floored to the µs (`leadflow.leads.scoring.rescore.after_days`), NO_TIME where days is NaN."""
    found = ~np.isnan(days)
    micros_ = np.floor(np.where(found, days, 0.0) * float(US_PER_DAY)).astype(np.int64)
    return np.where(found, now_us + micros_, NO_TIME)


def _field_tables(scorer: Scorer, name: str, column: Sequence[Any]) -> tuple[dict[Any, float], set[Any]]:
    """Fit points per distinct value of one field, and the values that disqualify (memoised by the scorer)."""
    points: dict[Any, float] = {}
    disqualifies: set[Any] = set()
    for value in set(column):
        _, total, reason = scorer._field_verdict(name, value)
        points[value] = total
        if reason is not None:
            disqualifies.add(value)
    return points, disqualifies


def _earliest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise the earlier of two µs columns, NO_TIME counting as none."""
    return np.where(a == NO_TIME, b, np.where(b == NO_TIME, a, np.minimum(a, b)))
