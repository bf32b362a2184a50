"""A run's final state from its report: Completed, "Completed with problems", or Failed with the report.

The domain code names a run's problems in its report (`leadflow.leads.work.problems.Problem`); a flow
returns `finish(report)`: the report itself when there are none, else a Completed state named
"Completed with problems" whose message lists them (the caller of the flow still gets the report).
An admin sees it in the Prefect runs list and automations fire: Prefect emits
`prefect.flow-run.Completed with problems`, which the shipped failed-run automation
(flows/automations.yaml) matches beside Failed and Crashed. Failures that stop work stay
exceptions (Failed); a `RunFailed` also hands the caller the report of what the run did.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, cast

from pydantic import BaseModel

from leadflow.leads.work.problems import Problem, summary

PROBLEMS_STATE = "Completed with problems"


class HasProblems(Protocol):
    problems: list[Problem]


R = TypeVar("R", bound=HasProblems)


class RunFailed(RuntimeError):
    """A run that did its work and then failed (a source or destination stopped, templates held):
    `report` says what it did, for the caller's summary (`leadflow run`)."""

    def __init__(self, message: str, *, report: BaseModel | None = None) -> None:
        super().__init__(message)
        self.report = report


def finish(report: R) -> R:
    """The flow's return value: `report`, or a "Completed with problems" state carrying it.

    Prefect makes a returned state the run's final state and hands its data to the caller, so
    whoever calls the flow gets `report` either way; hence the declared type.
    """
    if not report.problems:
        return report
    from prefect.states import Completed

    return cast(R, Completed(data=report, name=PROBLEMS_STATE, message=summary(report.problems)))
