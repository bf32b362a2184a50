"""What went wrong in a run that still finished, one line an admin can act on.

The domain code that knows the numbers names the problems in its report; flows/problems.py turns
them into the run's final state ("Completed with problems").
"""

from __future__ import annotations

from pydantic import BaseModel


class Problem(BaseModel):
    step: str  # ingest, nurture, handoff, notifications
    what: str  # one line an admin can act on

    def __str__(self) -> str:
        return f"{self.step}: {self.what}"


def summary(problems: list[Problem], limit: int = 1000) -> str:
    """The problems in one line, for a state message or an exception."""
    text = "; ".join(str(p) for p in problems)
    return text if len(text) <= limit else text[: limit - 1] + "…"
