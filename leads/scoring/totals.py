"""Per-lead activity totals for scoring, added up in numpy from the raw activity rows.

The database hands over one small row per activity (lead, a bit mask of the rules it matches,
its time), in (lead, time, id) order; numpy adds up every rule's decayed sum, every frequency
window and the latest hand raises and outcomes per lead. At a million leads this costs about half
of what one GROUP BY with an aggregate per rule cost, and it leaves the totals in arrays that the
requalify batch scores without a Python loop per lead.

Every caller (requalify, explain, backtest) goes through here, and the additions happen in the
same order for the same rows, so a lead's explanation adds up to exactly what requalify stored.
Decay factors are computed with `math.exp` (the platform's libm) rather than numpy's vectorised
exp, whose SIMD and scalar paths may differ in the last bit depending on array length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Select, String, case, cast, func, literal, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from leadflow.leads.db.models import Activity
from leadflow.leads.work.gc_pause import cycle_collector_paused

EPOCH = datetime(1970, 1, 1)
US_PER_DAY = 86_400_000_000
NO_TIME = np.iinfo(np.int64).min  # NaT as int64: "no time"
# Condition bits share a 64-bit integer with the lead id: 30 bits leave room for lead ids up to 8 billion.
MAX_CONDITIONS = 30


def micros(value: datetime) -> int:
    """Microseconds since 1970 of a naive UTC datetime (exact)."""
    return (value.replace(tzinfo=None) - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def span_micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def times_to_micros(values: Sequence[Any]) -> np.ndarray:
    """Times as the driver gives them (SQLite text, PostgreSQL datetimes, None) → int64 µs, NO_TIME for None."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    return np.array(values, dtype="datetime64[us]").astype(np.int64)


@dataclass(frozen=True)
class Matcher:
    """One (activity type, target text) condition some engagement or frequency rule uses; one bit each."""

    activity: str
    target_contains: str | None


@dataclass
class ActivityTotals:
    """What the activity of a set of leads adds up to at `now` (arrays indexed by group = lead)."""

    lead_ids: np.ndarray  # (G,) sorted
    sums: np.ndarray  # (G, engagement rules) decayed (or plain) sums
    counts: np.ndarray  # (G, frequency rules) matching events within each window
    oldest: np.ndarray  # (G, frequency rules) µs of the oldest such event (meaningful where count > 0)
    last: np.ndarray  # (G,) µs of the latest activity
    marks: dict[int, dict[str, int]] = field(default_factory=dict)  # group → latest µs per hand raise/outcome type

    def group_of(self, lead_ids: np.ndarray) -> np.ndarray:
        """The group of each lead id, -1 where the lead has no activity."""
        if not len(self.lead_ids):
            return np.full(len(lead_ids), -1, dtype=np.int64)
        at = np.searchsorted(self.lead_ids, lead_ids)
        at = np.minimum(at, len(self.lead_ids) - 1)
        return np.where(self.lead_ids[at] == lead_ids, at, -1)

    def row(self, lead_id: int) -> tuple[Any, ...] | None:
        """One lead's totals in the shape `Scorer.parts` reads, or None without activity."""
        found = self.group_of(np.array([lead_id], dtype=np.int64))[0]
        return None if found < 0 else self.row_at(int(found))

    def row_at(self, g: int) -> tuple[Any, ...]:
        frequency: list[Any] = []
        for j in range(self.counts.shape[1]):
            count = int(self.counts[g, j])
            frequency += [count, from_micros(self.oldest[g, j]) if count else None]
        marks = {kind: from_micros(at) for kind, at in self.marks.get(g, {}).items()}
        return (int(self.lead_ids[g]), *self.sums[g].tolist(), *frequency, marks, from_micros(self.last[g]))


class TotalsQuery:
    """The row query and the numpy arithmetic for one rule set; built once per `Scorer`."""

    def __init__(
        self,
        *,
        engagement: Sequence[Any],
        frequency: Sequence[Any],
        mark_kinds: Sequence[str],
        decay_rate: float,
        dialect: str,
    ) -> None:
        self.dialect = dialect
        self.decay_rate = decay_rate
        matchers: dict[Matcher, int] = {}
        for rule in [*engagement, *frequency]:
            matchers.setdefault(Matcher(rule.activity.value, rule.target_contains or None), len(matchers))
        self.matchers = tuple(matchers)
        self.mark_kinds = tuple(mark_kinds)
        self._mark_bit0 = len(self.matchers)
        self._engagement = tuple(
            (matchers[Matcher(r.activity.value, r.target_contains or None)], bool(r.decays and decay_rate))
            for r in engagement
        )
        self._frequency = tuple(
            (matchers[Matcher(r.activity.value, r.target_contains or None)], span_micros(timedelta(days=r.within_days)))
            for r in frequency
        )
        if len(self.matchers) + len(self.mark_kinds) > MAX_CONDITIONS:
            raise ValueError(f"more than {MAX_CONDITIONS} distinct activity conditions in one rule set")

    # --- SQL -------------------------------------------------------------------------------------

    def _bits(self) -> ColumnElement[int]:
        """An integer per activity row: bit i set when it matches condition i (rules, then mark kinds)."""
        by_type: dict[str, list[ColumnElement[int]]] = {}
        constant: dict[str, int] = {}
        for bit, m in enumerate(self.matchers):
            if m.target_contains is None:
                constant[m.activity] = constant.get(m.activity, 0) | (1 << bit)
            else:
                hit = case((self._target_like(m.target_contains), literal(1 << bit, BigInteger)), else_=0)
                by_type.setdefault(m.activity, []).append(hit)
        for offset, kind in enumerate(self.mark_kinds):
            constant[kind] = constant.get(kind, 0) | (1 << (self._mark_bit0 + offset))
        whens: dict[str, ColumnElement[int]] = {}
        # The rules' own types first, in rule order (usually the commonest first): CASE tries them in turn.
        for kind in dict.fromkeys([*(m.activity for m in self.matchers), *sorted({*by_type, *constant})]):
            expr: ColumnElement[int] = literal(constant.get(kind, 0), BigInteger)
            for part in by_type.get(kind, []):
                expr = expr + part
            whens[kind] = expr
        if not whens:
            return literal(0, BigInteger)
        return case(whens, value=col(Activity.type), else_=literal(0, BigInteger))

    def _target_like(self, text: str) -> ColumnElement[bool]:
        if self.dialect == "sqlite":
            # SQLite's LIKE ignores ASCII case, as its lower() does: the same matches as icontains, cheaper.
            escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
            return col(Activity.target).like(f"%{escaped}%", escape="/")
        return col(Activity.target).icontains(text, autoescape=True)

    def _time(self) -> ColumnElement[Any]:
        """occurred_at as the cheapest exact value: SQLite's stored text, PostgreSQL's epoch µs."""
        if self.dialect == "postgresql":
            return cast(func.extract("epoch", col(Activity.occurred_at)) * 1_000_000, BigInteger)
        return type_coerce(col(Activity.occurred_at), String)

    @property
    def _shift(self) -> int:
        """Bits below the lead id when lead and conditions travel as one integer (fewer objects per row)."""
        return len(self.matchers) + len(self.mark_kinds)

    def query(self, now: datetime, *lead_filter: ColumnElement[bool]) -> Select[Any]:
        """One row per activity up to `now` of the filtered leads, in (lead, time, id) order: the lead id
        and the condition bits packed into one integer (lead · 2^shift + bits), and the time."""
        packed = cast(col(Activity.lead_id), BigInteger) * literal(1 << self._shift, BigInteger) + self._bits()
        return (
            select(packed, self._time())
            .where(col(Activity.occurred_at) <= now, *lead_filter)
            .order_by(col(Activity.lead_id), col(Activity.occurred_at), col(Activity.id))
        )

    # --- numpy -----------------------------------------------------------------------------------

    def collect(self, connection: Any, now: datetime, *lead_filter: ColumnElement[bool]) -> ActivityTotals:
        """Run `query` on `connection` (the driver's own tuples) and add the rows up."""
        with cycle_collector_paused():
            rows = connection.execute(self.query(now, *lead_filter)).cursor.fetchall()
            return self.totals(rows, now)

    def totals(self, rows: Sequence[tuple[Any, ...]], now: datetime) -> ActivityTotals:
        """Add up the rows of `query` (in its order) per lead."""
        n_rules, n_freq = len(self._engagement), len(self._frequency)
        if not rows:
            empty = np.empty(0, dtype=np.int64)
            return ActivityTotals(
                empty, np.zeros((0, n_rules)), np.zeros((0, n_freq), np.int64), np.zeros((0, n_freq), np.int64), empty
            )
        packed = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=len(rows))
        lead, bits = packed >> self._shift, packed & ((1 << self._shift) - 1)
        if self.dialect == "postgresql":
            at = np.fromiter(map(itemgetter(1), rows), dtype=np.int64, count=len(rows))
        else:
            at = times_to_micros(list(map(itemgetter(1), rows)))
        first_of_lead = np.r_[True, lead[1:] != lead[:-1]]
        starts = np.flatnonzero(first_of_lead)
        group = np.cumsum(first_of_lead) - 1
        size = len(starts)
        now_us = micros(now)
        weight = self._decay_factors(now_us - at)
        sums = np.zeros((size, n_rules))
        for r, (bit, decays) in enumerate(self._engagement):
            hit = (bits >> bit) & 1 == 1
            # A rule that does not decay counts its rows (exact in floats).
            sums[:, r] = np.bincount(group[hit], weights=weight[hit] if decays else None, minlength=size)
        counts = np.zeros((size, n_freq), dtype=np.int64)
        oldest = np.full((size, n_freq), NO_TIME, dtype=np.int64)
        for j, (bit, within) in enumerate(self._frequency):
            # Strictly within: at exactly oldest + within the oldest no longer counts (the lapse time).
            recent = ((bits >> bit) & 1 == 1) & (at > now_us - within)
            g = group[recent]
            counts[:, j] = np.bincount(g, minlength=size)
            first_groups, first = np.unique(g, return_index=True)  # rows are in time order per lead
            oldest[first_groups, j] = at[recent][first]
        last = at[np.r_[starts[1:], len(at)] - 1]
        marks: dict[int, dict[str, int]] = {}
        if self.mark_kinds:
            mark_mask = np.int64(((1 << len(self.mark_kinds)) - 1) << self._mark_bit0)
            for i in np.flatnonzero(bits & mark_mask).tolist():  # rare: hand raises and sales outcomes
                latest = marks.setdefault(int(group[i]), {})
                for offset, kind in enumerate(self.mark_kinds):
                    if bits[i] >> (self._mark_bit0 + offset) & 1:
                        latest[kind] = int(at[i])  # rows are in time order: the last one wins
        return ActivityTotals(lead[starts], sums, counts, oldest, last, marks)

    def _decay_factors(self, age_us: np.ndarray) -> np.ndarray:
        """e^(−rate·age in days) per row, with libm's exp (the same bits for any array length)."""
        if not self.decay_rate or not len(age_us):
            return np.ones(len(age_us))
        exponent = (age_us.astype(np.float64) / float(US_PER_DAY)) * -self.decay_rate
        return np.fromiter(map(math.exp, exponent.tolist()), dtype=np.float64, count=len(exponent))
