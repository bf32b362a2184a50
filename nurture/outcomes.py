"""What became of each claimed email in a send, and the tally of a send that a run reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What became of one claimed row in a send."""

    sent = "sent"
    unconfirmed = "unconfirmed"
    skipped = "skipped"
    deferred = "deferred"
    failed = "failed"
    held = "held"  # its template failed: back to pending, no attempt counted


@dataclass
class SendReport:
    sent: int = 0
    unconfirmed: int = 0  # in flight when a sender died: may have been delivered, never sent again
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)  # by where the template error is

    def count(self, outcome: Outcome, reason: str = "") -> None:
        if outcome == Outcome.sent:
            self.sent += 1
        elif outcome == Outcome.unconfirmed:
            self.unconfirmed += 1
        else:
            getattr(self, outcome.value)[reason] += 1

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.unconfirmed += other.unconfirmed
        self.skipped.update(other.skipped)
        self.deferred.update(other.deferred)
        self.failed.update(other.failed)
        self.held.update(other.held)
