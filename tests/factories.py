"""Small builders for test input, shared across test packages."""

from __future__ import annotations

import json
from typing import Any


def raw_event(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid activity record in the file format; override any key."""
    event: dict[str, Any] = {
        "id": f"e{n}",
        "email": f"lead{n}@example.com",
        "type": "page_view",
        "at": f"2026-09-{n % 28 + 1:02d}T10:00:00Z",
        "target": f"/page/{n}",
    }
    event.update(overrides)
    return event


def jsonl(*events: dict[str, Any]) -> str:
    """Events as JSON Lines, each line ending in a newline."""
    return "".join(json.dumps(e) + "\n" for e in events)
