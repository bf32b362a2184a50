"""What went wrong in a run that still finished: collected by each flow, shown in its report, and
made the run's final state, so an admin sees it in the Prefect runs list and automations fire.

A flow adds `Problem`s to its report and returns `finish(report)`: the report itself when there
are none, else a Completed state named "Completed with problems" whose message lists them (the
caller of the flow still gets the report). Failures that stop work stay exceptions (Failed).
Prefect emits `prefect.flow-run.Completed with problems` for such a run; the shipped failed-run
automation (flows/automations.yaml) matches it beside Failed and Crashed.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

PROBLEMS_STATE = "Completed with problems"


class Problem(BaseModel):
    step: str  # ingest, nurture, handoff, notifications
    what: str  # one line an admin can act on

    def __str__(self) -> str:
        return f"{self.step}: {self.what}"


class HasProblems(Protocol):
    problems: list[Problem]


def summary(problems: list[Problem], limit: int = 1000) -> str:
    """The problems in one line, for a state message or an exception."""
    text = "; ".join(str(p) for p in problems)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finish(report: HasProblems) -> Any:
    """The flow's return value: `report`, or a "Completed with problems" state carrying it."""
    if not report.problems:
        return report
    from prefect.states import Completed

    return Completed(data=report, name=PROBLEMS_STATE, message=summary(report.problems))
