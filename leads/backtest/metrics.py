"""The numbers a backtest reports: precision, recall, lift and conversion of a selection, and ROC AUC.

Pure arithmetic over lead ids and their outcomes, kept apart from the replay so each number can
be checked by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from leadflow.leads.backtest.outcomes import OutcomeKind
from leadflow.leads.db.models import Stage


@dataclass(frozen=True)
class Population:
    leads: int
    won: int
    lost: int

    @property
    def open(self) -> int:
        return self.leads - self.won - self.lost

    @property
    def base_rate(self) -> float | None:
        return _ratio(self.won, self.won + self.lost)


@dataclass(frozen=True)
class StageMetrics:
    stage: Stage
    selected: int  # leads at or above the stage
    won: int
    lost: int
    precision: float | None  # won / decided among the selected
    recall: float | None  # selected won / all won
    lift: float | None  # precision / base rate
    conversion: float | None  # won / all selected (open leads count as not converted)
    per_week: float | None = None  # leads newly reaching the stage per week, over the history


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def population(ids: Iterable[int], labels: Mapping[int, OutcomeKind]) -> Population:
    kinds = [labels.get(i, OutcomeKind.open) for i in ids]
    return Population(len(kinds), kinds.count(OutcomeKind.won), kinds.count(OutcomeKind.lost))


def selection_metrics(
    stage: Stage, selected: Iterable[int], base: Population, labels: Mapping[int, OutcomeKind]
) -> StageMetrics:
    chosen = population(selected, labels)
    precision = _ratio(chosen.won, chosen.won + chosen.lost)
    base_rate = base.base_rate
    return StageMetrics(
        stage=stage,
        selected=chosen.leads,
        won=chosen.won,
        lost=chosen.lost,
        precision=precision,
        recall=_ratio(chosen.won, base.won),
        lift=precision / base_rate if precision is not None and base_rate else None,
        conversion=_ratio(chosen.won, chosen.leads),
    )


def top(scores: Mapping[int, float], ids: Iterable[int], k: int) -> list[int]:
    """The k ids with the highest scores (ties by id, so results repeat)."""
    return sorted(ids, key=lambda i: (-scores[i], i))[:k]


def roc_auc(scored: Iterable[tuple[float, bool]]) -> float | None:
    """The chance that a random won lead ranks above a random lost one (ties count half); 0.5 is a coin flip."""
    ordered = sorted(scored, key=lambda s: s[0])
    positives = sum(won for _, won in ordered)
    negatives = len(ordered) - positives
    if not positives or not negatives:
        return None
    rank_sum, i = 0.0, 0
    while i < len(ordered):  # average ranks over runs of equal scores
        j = i + 1
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        rank_sum += sum(won for _, won in ordered[i:j]) * (i + 1 + j) / 2
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
