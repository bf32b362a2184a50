"""Nurture sequences in the workspace config: who enters, which emails follow when, who leaves.

Kept apart from the rest of the config because sequences are their own small language
(criteria, waits, branches, exits, re-enrollment); `leadflow.leads.config.workspace` imports them from here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from leadflow.leads.config.base import Strict
from leadflow.leads.db.models import Stage

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)]
StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$", max_length=100)]

# Lead columns an enrollment may test; company_size is the one number.
FitField = Literal[
    "title", "industry", "company_size", "country", "company", "timezone", "budget", "authority", "need", "timing"
]
# Engagement a wait or a branch can look for, and the activity types behind each word.
Engagement = Literal["opened", "clicked", "visited", "replied"]
ENGAGEMENT_ACTIVITY: dict[str, str] = {
    "opened": "email_open",
    "clicked": "email_click",
    "visited": "page_view",
    "replied": "email_reply",
}
# Exits a sequence may switch off; unsubscribed, bounced and disqualified always end an enrollment.
OptionalExit = Literal["replied", "sales_took_over"]
END = "end"  # a branch target that ends the enrollment (completed) instead of sending more


class FitCriterion(Strict):
    """A test on one lead field: one_of (case-insensitive), contains (case-insensitive) or a number range."""

    one_of: list[str] | None = Field(default=None, min_length=1)
    contains: str | None = Field(default=None, min_length=1)
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FitCriterion:
        kinds = [
            self.one_of is not None,
            self.contains is not None,
            self.at_least is not None or self.at_most is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of one_of, contains, or at_least/at_most")
        return self


class EnrollRule(Strict):
    """Who may enter: every criterion given must hold."""

    stages: list[Stage] = Field(min_length=1)
    min_score: float | None = None
    max_score: float | None = None
    inactive_days: float | None = Field(
        default=None, gt=0, description="Only leads with no activity in the last N days (or none at all)."
    )
    fit: dict[FitField, FitCriterion] = Field(default_factory=dict, description="Tests on profile fields.")

    @model_validator(mode="after")
    def _numbers_only_on_company_size(self) -> EnrollRule:
        for name, criterion in self.fit.items():
            numeric = criterion.at_least is not None or criterion.at_most is not None
            if numeric != (name == "company_size"):
                raise ValueError(
                    f"fit.{name}: " + ("use at_least/at_most" if name == "company_size" else "use one_of or contains")
                )
        return self


# Kept under its old name: code and tests written before the split import `Enrollment`.
Enrollment = EnrollRule


class WaitFor(Strict):
    """Wait until the lead does something (after the previous email), but at most up_to_days."""

    event: Engagement
    page: str | None = Field(default=None, min_length=1, description="For visited: part of the page URL.")
    up_to_days: float = Field(gt=0)


class Branch(Strict):
    """When the step is due: if the lead did this since the previous email, go to another step instead."""

    if_: Engagement = Field(alias="if")
    page: str | None = Field(default=None, min_length=1, description="For visited: part of the page URL.")
    goto: StepId = Field(description=f"A later step's id, or {END!r} to finish the sequence.")


class NurtureStep(Strict):
    id: StepId | None = Field(default=None, description="Name for branches to jump to; default: the template name.")
    template: str = Field(description="Template name under templates/: NAME.html and NAME.txt.")
    subject: str = Field(description="Subject line; a Jinja expression like the templates.")
    delay_days: float = Field(default=0, ge=0, description="Days after the previous step (or enrollment).")
    wait_for: WaitFor | None = Field(default=None, description="Instead of delay_days: due at the event or the limit.")
    branches: list[Branch] = Field(default_factory=list, description="Checked in order when the step is due.")

    @property
    def key(self) -> str:
        return self.id or self.template

    @model_validator(mode="after")
    def _one_wait(self) -> NurtureStep:
        if self.wait_for is not None and self.delay_days:
            raise ValueError("give either delay_days or wait_for, not both")
        return self


class Reenroll(Strict):
    """When a lead may go through the same sequence again; without this block, never."""

    after_days: float = Field(ge=0, description="Days after its previous enrollment in this sequence ended.")
    max_times: int | None = Field(default=None, ge=2, description="How often in total, the first time included.")


_DEFAULT_EXITS: list[OptionalExit] = ["replied", "sales_took_over"]


class Sequence(Strict):
    name: Slug
    priority: int = Field(default=0, description="Higher wins when a lead fits several sequences; ties: listed first.")
    enroll: EnrollRule
    exit_at_stage: Stage = Field(default=Stage.mql, description="The goal: leave on reaching this stage or beyond.")
    exit_on: list[OptionalExit] = Field(default_factory=lambda: _DEFAULT_EXITS.copy())
    reenroll: Reenroll | None = None
    steps: list[NurtureStep] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_all(cls, value: str) -> str:
        if value == "all":
            raise ValueError('"all" is reserved: an unsubscribe from "all" means every marketing email')
        return value

    @model_validator(mode="after")
    def _branches_go_forward(self) -> Sequence:
        """Branches may only skip ahead, so each step is sent at most once per enrollment."""
        index: dict[str, int] = {}
        repeated: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id is not None and (step.id in index or step.id == END):
                raise ValueError(f"step {i + 1}: id {step.id!r} is used twice (give the steps distinct ids)")
            if step.key in index:
                repeated.add(step.key)  # two steps share a template: fine, unless a branch names it
            index.setdefault(step.key, i)
        for i, step in enumerate(self.steps):
            for branch in step.branches:
                if branch.goto in repeated:
                    raise ValueError(f"step {i + 1}: {branch.goto!r} names two steps; give them distinct ids")
                target = index.get(branch.goto)
                if branch.goto != END and target is None:
                    raise ValueError(
                        f"step {i + 1}: branch goes to {branch.goto!r}, which is no step id of this sequence"
                    )
                if target is not None and target <= i:
                    raise ValueError(f"step {i + 1}: branch to {branch.goto!r} goes back; branches may only skip ahead")
        return self

    def step_index(self, key: str) -> int | None:
        """The position of a step given by id (or template), or by its 1-based number."""
        for i, step in enumerate(self.steps):
            if step.key == key:
                return i
        if key.isdigit() and 1 <= int(key) <= len(self.steps):
            return int(key) - 1
        return None


class NurtureConfig(Strict):
    max_active_per_lead: int = Field(default=1, ge=1, description="How many sequences one lead may be in at once.")
    sequences: list[Sequence] = []

    @model_validator(mode="after")
    def _unique_names(self) -> NurtureConfig:
        names = [s.name for s in self.sequences]
        if len(set(names)) != len(names):
            raise ValueError("sequence names must be unique")
        return self

    def by_priority(self) -> list[Sequence]:
        """Highest priority first; equal priorities keep the order they are listed in."""
        return sorted(self.sequences, key=lambda s: -s.priority)
