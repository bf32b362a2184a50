"""`leadflow backtest` for one workspace: which outcomes and rule sets, then tables a marketer can read or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from leadflow.cli.summary import STAGE_LABELS
from leadflow.leads.backtest.metrics import Population, StageMetrics
from leadflow.leads.backtest.outcomes import (
    DECIDED,
    OutcomeKind,
    Outcomes,
    lead_labels,
    load_outcomes,
    outcomes_from_crm,
)
from leadflow.leads.backtest.predictive import train_and_store
from leadflow.leads.backtest.replay import THRESHOLDS, BacktestReport, run_backtest
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.workspace import Workspace

RULE_KEYS = ("scoring", "stages", "recycle", "disqualify")
DEFAULT_OUTCOMES = Path("data/outcomes.csv")

HOW_TO_READ = (
    "How to read the tables: [bold]leads[/] would have been at or above the stage at the end of the history; "
    "[bold]precision[/] is the share of them won, among those whose deal was decided; [bold]recall[/] the share "
    "of all won leads they include; [bold]lift[/] how many times better than picking leads at random "
    "(1.00× is no better); [bold]conversion[/] won ÷ all of them (open deals count as not won); "
    "[bold]weekly[/] how many leads newly reached the stage per week — what sales would have received."
)


@dataclass(frozen=True)
class BacktestRequest:
    outcomes: Path | None = None  # default: data/outcomes.csv in the workspace if present, else the CRM's deals
    as_of: datetime | None = None
    split: datetime | None = None
    compare: Path | None = None  # the file `other` was read from, to tell equal versions apart
    store: bool | None = None  # None: as the config's predictive.store says


def rule_sets(
    config: WorkspaceConfig, other: WorkspaceConfig | None, paths: tuple[Path, Path | None]
) -> list[tuple[str, WorkspaceConfig]]:
    """The workspace's rules, and another file's scoring, stages, recycle and disqualify rules beside them."""
    sets = [(config.scoring.version, config)]
    if other is not None:
        sets.append((other.scoring.version, config.model_copy(update={k: getattr(other, k) for k in RULE_KEYS})))
        if sets[0][0] == sets[1][0]:
            sets = [(f"{name} ({path.name})", c) for (name, c), path in zip(sets, paths, strict=True) if path]
    return sets


def backtest_workspace(
    ws: Workspace, other: WorkspaceConfig | None, request: BacktestRequest
) -> tuple[BacktestReport, int | None]:
    """The report, and how many leads got a stored probability (None: nothing stored)."""
    config = ws.config
    default_file = ws.settings.resolve(DEFAULT_OUTCOMES)
    store = config.predictive.store if request.store is None else request.store
    sets = rule_sets(config, other, (ws.settings.config_file, request.compare))
    with session_scope(ws.engine) as session:
        known: Outcomes
        if request.outcomes is not None or default_file.exists():
            known = load_outcomes(request.outcomes or default_file)
        else:
            known = outcomes_from_crm(session)
        report = run_backtest(session=session, rule_sets=sets, outcomes=known, as_of=request.as_of, split=request.split)
        stored = None
        if store:
            won = {i: k is OutcomeKind.won for i, k in lead_labels(session, known).items() if k in DECIDED}
            stored = train_and_store(session=session, config=config.predictive, won=won, now=report.as_of) or 0
    return report, stored


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def _outcome_line(p: Population) -> str:
    return f"{p.won} won, {p.lost} lost, {p.open} open"


def _metrics_table(
    title: str, report: BacktestReport, pick: str, *, per_week: bool = False, taken_by: str = "rules"
) -> Table:
    """One row per stage; with two rule sets, one row per rule set under each stage, so they sit side by side."""
    named = len(report.rule_sets) > 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column(f"stage ≥ / {taken_by}" if named else "stage ≥", no_wrap=True)
    for name in ("leads", "won", "lost", "precision", "recall", "lift", "conversion", *(["weekly"] * per_week)):
        table.add_column(name, justify="right")
    for i, stage in enumerate(THRESHOLDS):
        if named:
            table.add_row(f"[bold]{STAGE_LABELS[stage]}")
        for rs in report.rule_sets:
            rows: list[StageMetrics] = getattr(rs, pick)
            if rows:
                m = rows[i]
                cells = [f"  {rs.name}" if named else STAGE_LABELS[stage], str(m.selected), str(m.won), str(m.lost)]
                cells += [_pct(m.precision), _pct(m.recall), _times(m.lift), _pct(m.conversion)]
                table.add_row(*cells, *([_count(m.per_week)] if per_week else []))
    return table


def print_backtest(console: Console, report: BacktestReport, stored: int | None = None) -> None:
    test = report.test
    console.print(f"[bold]Backtest as of {_when(report.as_of)}[/], over {report.weeks} whole weeks of history")
    console.print(f"Outcomes from {report.outcomes_source}: {_outcome_line(report.all)} among {report.all.leads} leads")
    for problem in report.outcome_problems[:10]:
        console.print(f"  [yellow]skipped[/] {problem}", highlight=False, soft_wrap=True)
    if len(report.outcome_problems) > 10:
        console.print(f"  … and {len(report.outcome_problems) - 10} more rows skipped")
    if report.unmatched_outcomes:
        console.print(f"  {report.unmatched_outcomes} outcome emails match no lead and are left out")
    console.print(
        f"Split at {_when(report.split)}: the {report.train.leads} leads first seen before it train the naive-Bayes "
        f"baseline ({_outcome_line(report.train)}); the {test.leads} seen since are the test set "
        f"({_outcome_line(test)}; {_pct(test.base_rate)} of decided test leads were won)."
    )
    console.print()
    console.print(HOW_TO_READ)
    console.print()
    console.print(_metrics_table("Rules on the test set", report, "test"))
    if not any(rs.predictive for rs in report.rule_sets):
        console.print("Naive Bayes: not trained — the training set needs at least one won and one lost lead.")
    else:
        title = "Naive Bayes on the test set, taking as many leads as the rules"
        console.print(_metrics_table(title, report, "predictive", taken_by="as many as"))
    title = f"Rules on all leads (weekly: average over the {report.weeks} weeks before {report.as_of:%Y-%m-%d})"
    console.print(_metrics_table(title, report, "all", per_week=True))
    aucs = [f"rules {rs.name} {_auc(rs.auc)}" for rs in report.rule_sets]
    console.print(
        f"Ranking quality on the {test.won + test.lost} decided test leads (ROC AUC: 0.50 is a coin flip, "
        "1.00 ranks every won lead above every lost one): "
        + ", ".join([*aucs, f"naive Bayes {_auc(report.predictive_auc)}"])
    )
    if stored:
        console.print(f"Stored the naive-Bayes won probability on {stored} leads, trained on every decided lead.")
    elif stored == 0:
        console.print("[yellow]Nothing stored:[/] the outcomes need at least one won and one lost lead.")


def _auc(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def report_as_json(report: BacktestReport, stored: int | None = None) -> dict[str, Any]:
    """The report for machines: plain numbers, stage names as keys, times in ISO 8601 UTC."""

    def metrics(rows: list[StageMetrics]) -> dict[str, Any]:
        return {
            m.stage.value: {k: _clean(v) for k, v in m.__dict__.items() if k != "stage"} for m in rows
        }  # fmt: skip

    def population(p: Population) -> dict[str, Any]:
        return {"leads": p.leads, "won": p.won, "lost": p.lost, "open": p.open, "base_rate": _clean(p.base_rate)}

    return {
        "as_of": report.as_of.isoformat() + "Z",
        "split": report.split.isoformat() + "Z",
        "weeks": report.weeks,
        "outcomes": {
            "source": report.outcomes_source,
            "skipped_rows": report.outcome_problems,
            "unmatched_emails": report.unmatched_outcomes,
        },
        "train": population(report.train),
        "test": population(report.test),
        "all": population(report.all),
        "rule_sets": [
            {
                "name": rs.name,
                "test": metrics(rs.test),
                "all": metrics(rs.all),
                "naive_bayes_same_count": metrics(rs.predictive),
                "auc": _clean(rs.auc),
                "new_per_week": {stage.value: counts for stage, counts in rs.weekly.items()},
            }
            for rs in report.rule_sets
        ],
        "naive_bayes_auc": _clean(report.predictive_auc),
        "stored_predictive_scores": stored,
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isinf(value) or math.isnan(value) else round(value, 4)
    return value
