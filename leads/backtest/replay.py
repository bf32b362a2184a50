"""Replay the activity history under a rule set and hold its stages against known outcomes.

A backtest asks, for each stage threshold: of the leads the rules would have put at or above it,
how many were won (precision), how many of the won leads did they catch (recall), how much better
than picking at random is that (lift), and how many leads a week would sales have received.

Stages here are *stateless*: the highest stage whose entry rule the score parts meet at one
moment, with no memory of earlier moves and no recycling, so any moment can be replayed with one
GROUP BY per batch of leads. Leads the rules disqualify (competitors, ...) reach no stage.

A time split keeps the learned baseline honest: the naive-Bayes model trains on the leads first
seen before the split point and is scored on the later ones, the test set, where the rules are
scored too (and on all leads, since rules learn nothing from outcomes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.backtest.metrics import Population, StageMetrics, population, roc_auc, selection_metrics, top
from leadflow.leads.backtest.outcomes import DECIDED, OutcomeKind, Outcomes, lead_labels
from leadflow.leads.backtest.predictive import NaiveBayes, lead_features
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import Activity, ActivityType, Lead, Stage, funnel_rank
from leadflow.leads.requalify.lead_reads import LEAD_COLUMNS
from leadflow.leads.requalify.run import make_scorer, plan_shards
from leadflow.leads.scoring.rules import Scorer, _as_datetime
from leadflow.leads.scoring.stages import rule_met

THRESHOLDS: tuple[Stage, ...] = (Stage.prospect, Stage.hot_prospect, Stage.mql, Stage.sql)
SALES_TYPES = tuple(
    t.value
    for t in (
        ActivityType.sales_accepted, ActivityType.sales_rejected, ActivityType.sales_disqualified,
        ActivityType.deal_won, ActivityType.deal_lost,
    )
)  # fmt: skip
TRAIN_QUANTILE = 0.7
WEEK = timedelta(weeks=1)


class BacktestError(Exception):
    """Nothing to replay: no activity, or none up to the evaluation moment."""


@dataclass(frozen=True)
class LeadPoint:
    """One lead at one moment under one rule set."""

    stage: Stage
    score: float  # the total score; -inf for a disqualified lead, which sales never get


def stateless_stage(scorer: Scorer, config: WorkspaceConfig, lead: Any, row: Any, now: datetime) -> LeadPoint:
    """The highest stage whose entry rule the lead's score parts meet at `now`."""
    parts = scorer.parts(lead, row, now)
    if parts.disqualified_by:
        return LeadPoint(Stage.disqualified, -math.inf)
    for stage, rule in reversed(config.stages.ordered()):
        if rule_met(rule, parts, lead) is not None:
            return LeadPoint(stage, parts.total)
    return LeadPoint(Stage.suspect, parts.total)


def stages_as_of(
    *, session: Session, config: WorkspaceConfig, now: datetime, shard_size: int = 5000, scorer: Scorer | None = None
) -> dict[int, LeadPoint]:
    """Every lead seen by `now` (any activity up to then) with its stateless stage at `now`."""
    scorer = scorer or make_scorer(session, config)
    points: dict[int, LeadPoint] = {}
    for lo, hi in plan_shards(session, shard_size):
        leads = {lead.id: lead for lead in session.execute(select(*LEAD_COLUMNS).where(col(Lead.id).between(lo, hi)))}
        totals = scorer.totals(session.connection(), now, col(Activity.lead_id).between(lo, hi))
        for g, lead_id in enumerate(totals.lead_ids.tolist()):
            points[lead_id] = stateless_stage(scorer, config, leads[lead_id], totals.row_at(g), now)
    return points


def first_seen(session: Session, now: datetime) -> dict[int, datetime]:
    query = select(col(Activity.lead_id), func.min(col(Activity.occurred_at))).where(col(Activity.occurred_at) <= now)
    return {lead_id: _as_datetime(at) for lead_id, at in session.execute(query.group_by(col(Activity.lead_id)))}


def latest_activity(session: Session) -> datetime | None:
    """The latest marketing activity: sales outcomes are labels and must not move the evaluation moment."""
    at = session.execute(
        select(func.max(col(Activity.occurred_at))).where(col(Activity.type).notin_(SALES_TYPES))
    ).scalar()
    return None if at is None else _as_datetime(at)


def default_split(seen: Iterable[datetime]) -> datetime | None:
    """The 70% quantile of first-seen times: the oldest 70% of leads train, the newest 30% test."""
    times = sorted(seen)
    return times[int(TRAIN_QUANTILE * len(times))] if times else None


def at_or_above(points: Mapping[int, LeadPoint], ids: Iterable[int], stage: Stage) -> list[int]:
    """The ids whose stage is `stage` or higher; disqualified leads rank as suspects, below every threshold."""
    rank = funnel_rank(stage)
    return [i for i in ids if funnel_rank(points[i].stage) >= rank]


# --- weekly replays -----------------------------------------------------------------------------------


def weekly_new(
    replay: Callable[[datetime], Mapping[int, LeadPoint]], start: datetime, as_of: datetime
) -> dict[Stage, list[int]]:
    """Per threshold, how many leads first reached it in each whole week before `as_of` (oldest first).

    Stages are sampled at each week's end; a lead counts once, in the week it was first at or above
    the threshold, as sales would receive it once. Leads already there at the first week's start are
    not counted.
    """
    weeks = int((as_of - start) / WEEK)
    reached: dict[Stage, set[int]] = {s: set() for s in THRESHOLDS}
    new: dict[Stage, list[int]] = {s: [] for s in THRESHOLDS}
    for k in range(weeks, -1, -1):
        points = replay(as_of - k * WEEK)
        for stage in THRESHOLDS:
            now_at = set(at_or_above(points, points, stage))
            if k < weeks:
                new[stage].append(len(now_at - reached[stage]))
            reached[stage] |= now_at
    return new


# --- the whole backtest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSetResult:
    name: str
    test: list[StageMetrics]
    all: list[StageMetrics]  # with per_week filled in
    predictive: list[StageMetrics]  # naive Bayes on the test set, same number of leads as the rules select
    auc: float | None  # the total score as a ranking of decided test leads
    weekly: dict[Stage, list[int]]


@dataclass(frozen=True)
class BacktestReport:
    as_of: datetime
    split: datetime
    outcomes_source: str
    outcome_problems: list[str]
    unmatched_outcomes: int  # emails in the outcomes that match no lead
    train: Population
    test: Population
    all: Population
    rule_sets: list[RuleSetResult]
    predictive_auc: float | None  # None when the training set has no won or no lost lead
    weeks: int


@dataclass(frozen=True)
class _Evaluation:
    """What every rule set is measured against: who is in which set, the labels, the baseline's scores."""

    seen: dict[int, datetime]
    test_ids: list[int]
    labels: dict[int, OutcomeKind]
    probabilities: dict[int, float]  # naive Bayes, test leads; empty without a model

    @property
    def decided_test(self) -> list[int]:
        return [i for i in self.test_ids if self.labels.get(i) in DECIDED]


def run_backtest(
    *,
    session: Session,
    rule_sets: list[tuple[str, WorkspaceConfig]],
    outcomes: Outcomes,
    as_of: datetime | None = None,
    split: datetime | None = None,
    shard_size: int = 5000,
) -> BacktestReport:
    """Backtest each (name, config) rule set; the first config's `predictive` section shapes the baseline."""
    as_of = as_of or latest_activity(session)
    if as_of is None:
        raise BacktestError("there is no activity to replay: ingest some first (leadflow run ingest)")
    seen = first_seen(session, as_of)
    split = split or default_split(seen.values())
    if split is None:
        raise BacktestError(f"no lead has activity on or before {as_of:%Y-%m-%d %H:%M}")
    matched = lead_labels(session, outcomes)
    labels = {i: kind for i, kind in matched.items() if i in seen}
    train_ids = [i for i, at in seen.items() if at < split]
    test_ids = [i for i, at in seen.items() if at >= split]
    wanted = {*test_ids, *(i for i in train_ids if labels.get(i) in DECIDED)}
    predictive = rule_sets[0][1].predictive
    all_features = lead_features(session=session, config=predictive, now=as_of, shard_size=shard_size)
    features = {i: f for i, f in all_features if i in wanted}
    model = NaiveBayes.train((features[i], labels[i] is OutcomeKind.won) for i in train_ids if labels.get(i) in DECIDED)
    probabilities = {i: model.probability(features[i]) for i in test_ids} if model else {}
    context = _Evaluation(seen, test_ids, labels, probabilities)
    results = [_rule_set(session, name, config, context, as_of, shard_size) for name, config in rule_sets]
    decided_test = context.decided_test
    return BacktestReport(
        as_of=as_of,
        split=split,
        outcomes_source=outcomes.source,
        outcome_problems=outcomes.problems,
        unmatched_outcomes=len(outcomes.by_email) - len(matched),
        train=population(train_ids, labels),
        test=population(test_ids, labels),
        all=population(seen, labels),
        rule_sets=results,
        predictive_auc=roc_auc((probabilities[i], labels[i] is OutcomeKind.won) for i in decided_test)
        if model
        else None,
        weeks=int((as_of - min(seen.values())) / WEEK),
    )


def _rule_set(
    session: Session, name: str, config: WorkspaceConfig, context: _Evaluation, as_of: datetime, shard_size: int
) -> RuleSetResult:
    scorer = make_scorer(session, config)

    def replay(at: datetime) -> dict[int, LeadPoint]:
        return stages_as_of(session=session, config=config, now=at, shard_size=shard_size, scorer=scorer)

    points = replay(as_of)
    weekly = weekly_new(lambda at: points if at == as_of else replay(at), min(context.seen.values()), as_of)
    labels, test_ids = context.labels, context.test_ids
    test, everyone = population(test_ids, labels), population(context.seen, labels)
    test_rows, all_rows, nb_rows = [], [], []
    for stage in THRESHOLDS:
        chosen = at_or_above(points, test_ids, stage)
        per_week = sum(weekly[stage]) / len(weekly[stage]) if weekly[stage] else None
        test_rows.append(selection_metrics(stage, chosen, test, labels))
        all_chosen = at_or_above(points, context.seen, stage)
        all_rows.append(replace(selection_metrics(stage, all_chosen, everyone, labels), per_week=per_week))
        if context.probabilities:
            nb_chosen = top(context.probabilities, test_ids, len(chosen))
            nb_rows.append(selection_metrics(stage, nb_chosen, test, labels))
    auc = roc_auc((points[i].score, labels[i] is OutcomeKind.won) for i in context.decided_test)
    return RuleSetResult(name, test_rows, all_rows, nb_rows, auc, weekly)
