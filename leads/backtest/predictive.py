"""A learned baseline beside the rules: naive-Bayes won probability, as Odoo CRM's predictive lead scoring does it.

For each feature value the model counts how often it occurs among won and among lost leads;
P(won | features) ∝ P(won) · Π P(value | won), and likewise for lost, normalised to 0..1. Unset values
and values never seen in training carry no evidence (Odoo skips them too); seen values are
Laplace-smoothed so a value seen only among won leads does not make a loss impossible.

Features are a few profile fields, reduced to coarse bands so they repeat across leads, and
activity counts binned 0 / 1–2 / 3–5 / 6+; the counts of a batch of leads come from one GROUP BY.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from leadflow.leads.config.scoring import FREE_MAIL_DOMAINS, PredictiveConfig
from leadflow.leads.db.base import table_of
from leadflow.leads.db.models import Activity, Lead
from leadflow.leads.requalify.lead_reads import LEAD_COLUMNS
from leadflow.leads.requalify.run import plan_shards
from leadflow.leads.scoring.rules import _matches, email_domain

Features = Mapping[str, str | None]

_SIZE_BANDS = ((10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"), (5000, "1001-5000"))
_SENIORITY = tuple(
    (level, re.compile(pattern, re.IGNORECASE))
    for level, pattern in (
        ("student", r"\b(student|intern)\b"),
        ("executive", r"\b(chief|ceo|cto|cmo|cfo|coo|vp|vice president|president|founder|owner)\b"),
        ("director", r"\b(head of|director)\b"),
        ("manager", r"\bmanager\b"),
    )
)


def size_band(size: int | None) -> str | None:
    if size is None:
        return None
    return next((label for top, label in _SIZE_BANDS if size <= top), "5001+")


def seniority(title: str | None) -> str | None:
    if not title or not title.strip():
        return None
    return next((level for level, pattern in _SENIORITY if pattern.search(title)), "staff")


def count_bin(count: int) -> str:
    return "0" if count == 0 else "1-2" if count <= 2 else "3-5" if count <= 5 else "6+"


def profile_value(lead: Any, name: str) -> str | None:
    """One profile feature of a lead row; derived fields are bands, so values repeat across leads."""
    if name == "company_size_band":
        return size_band(lead.company_size)
    if name == "title_seniority":
        return seniority(lead.title)
    if name == "email_kind":
        return "free_mail" if email_domain(lead.email) in FREE_MAIL_DOMAINS else "company"
    value = getattr(lead, name)
    text = str(value).strip().lower() if value is not None else ""
    return text or None


def count_query(config: PredictiveConfig, now: datetime, *lead_filter: ColumnElement[bool]) -> Select[Any]:
    """Per lead, how many activities up to `now` match each configured count feature."""
    columns = [func.sum(case((_matches(c), 1), else_=0)) for c in config.activity_counts]
    return (
        select(col(Activity.lead_id), *columns)
        .where(col(Activity.occurred_at) <= now, *lead_filter)
        .group_by(col(Activity.lead_id))
    )


def lead_features(
    *, session: Session, config: PredictiveConfig, now: datetime, shard_size: int = 5000
) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(lead id, features as of `now`) for every lead, a batch of ids at a time."""
    for lo, hi in plan_shards(session, shard_size):
        counts = {
            row[0]: row[1:] for row in session.execute(count_query(config, now, col(Activity.lead_id).between(lo, hi)))
        }
        for lead in session.execute(select(*LEAD_COLUMNS).where(col(Lead.id).between(lo, hi))):
            features: dict[str, str | None] = {name: profile_value(lead, name) for name in config.fields}
            row = counts.get(lead.id) or (0,) * len(config.activity_counts)
            features |= {c.name: count_bin(int(n or 0)) for c, n in zip(config.activity_counts, row, strict=True)}
            yield lead.id, features


@dataclass(frozen=True)
class NaiveBayes:
    """Won/lost frequencies per feature value, from decided leads."""

    won: int
    lost: int
    counts: dict[str, dict[str, tuple[int, int]]]  # feature -> value -> (won, lost)
    totals: dict[str, tuple[int, int]]  # feature -> (won, lost) leads that have a value for it

    @classmethod
    def train(cls, samples: Iterable[tuple[Features, bool]]) -> NaiveBayes | None:
        """None when the samples hold no won or no lost lead: there is nothing to contrast."""
        won = lost = 0
        tallies: dict[str, Counter[tuple[str, bool]]] = defaultdict(Counter)
        for features, is_won in samples:
            won, lost = won + is_won, lost + (not is_won)
            for name, value in features.items():
                if value is not None:
                    tallies[name][(value, is_won)] += 1
        if not won or not lost:
            return None
        counts = {
            name: {value: (tally[(value, True)], tally[(value, False)]) for value, _ in tally}
            for name, tally in tallies.items()
        }
        totals = {
            name: (sum(w for w, _ in values.values()), sum(n for _, n in values.values()))
            for name, values in counts.items()
        }
        return cls(won=won, lost=lost, counts=counts, totals=totals)

    def probability(self, features: Features) -> float:
        """P(won | features), 0..1."""
        log_won, log_lost = math.log(self.won), math.log(self.lost)
        for name, value in features.items():
            values = self.counts.get(name, {})
            if value is None or value not in values:
                continue
            won_total, lost_total = self.totals[name]
            won_count, lost_count = values[value]
            log_won += math.log((won_count + 1) / (won_total + len(values)))
            log_lost += math.log((lost_count + 1) / (lost_total + len(values)))
        odds = log_lost - log_won  # a logistic of the log odds, in the direction that cannot overflow
        return 1.0 / (1.0 + math.exp(odds)) if odds <= 0 else math.exp(-odds) / (1.0 + math.exp(-odds))


def train_and_store(
    *, session: Session, config: PredictiveConfig, won: Mapping[int, bool], now: datetime, shard_size: int = 5000
) -> int | None:
    """Train on every decided lead (`won`: lead id -> won?) and store P(won) on every lead; the caller commits.

    None when there is nothing to learn from (no won or no lost lead). Two passes over the leads,
    so only the decided leads' features are held at once.
    """
    features = partial(lead_features, session=session, config=config, now=now, shard_size=shard_size)
    model = NaiveBayes.train((f, won[i]) for i, f in features() if i in won)
    if model is None:
        return None
    table = table_of(Lead)
    statement = update(table).where(table.c.id == bindparam("lid")).values(predictive_score=bindparam("p"))
    stored, batch = 0, []
    for lead_id, values in features():
        batch.append({"lid": lead_id, "p": round(model.probability(values), 6)})
        if len(batch) >= shard_size:
            session.connection().execute(statement, batch)
            stored, batch = stored + len(batch), []
    if batch:
        session.connection().execute(statement, batch)
    return stored + len(batch)
