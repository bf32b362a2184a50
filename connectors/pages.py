"""What every source yields: pages of validated records, rejected ones, and the cursor to save with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leadflow.leads.ingest.records import ActivityRecord, ProfileRecord, Rejected


@dataclass(frozen=True)
class Page:
    """One batch of one stream (a file, a CRM object): stored in one transaction with its cursor.

    `profiles` are CRM records that describe a lead without being an activity (contacts, persons);
    `skipped` counts vendor records that map to nothing on purpose (e.g. an email "sent" event).
    """

    stream: str
    records: Sequence[ActivityRecord]  # a list, or `ActivityRows` (plain tuples) from file sources
    rejected: list[Rejected]
    cursor: dict[str, Any]
    profiles: list[ProfileRecord] = field(default_factory=list)
    skipped: int = 0
