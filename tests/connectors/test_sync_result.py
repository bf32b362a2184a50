"""A source that stops partway still reports what it stored, and why it stopped."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.pages import Page
from leadflow.connectors.sync import sync_source, sync_until_stopped
from tests.factories import jsonl, raw_event

NOW = datetime(2026, 10, 1, 12, 0)


class StopsAfterFirstPage:
    """A file source whose connection drops after its first page (an expired token, say)."""

    def __init__(self, inner: FileActivitySource) -> None:
        self.inner, self.name = inner, inner.name

    def streams(self) -> Sequence[Any]:
        return self.inner.streams()

    def pages(self, stream: Any, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]:
        yield next(iter(self.inner.pages(stream, cursor, now=now)))
        raise PermissionError("token expired")


def test_a_source_that_stops_returns_what_it_stored_with_the_error(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(*(raw_event(n) for n in range(10))))
    source = StopsAfterFirstPage(FileActivitySource("website", file, batch_size=4, workers=0))

    result = sync_until_stopped(engine=engine, source=source, now=NOW)

    assert isinstance(result.error, PermissionError)
    assert result.totals.pages == 1 and result.totals.inserted == 4
    counts = result.counts("file")
    assert (counts.inserted, counts.error) == (4, "token expired")


def test_sync_source_raises_the_error_that_stopped_it(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(*(raw_event(n) for n in range(10))))
    source = StopsAfterFirstPage(FileActivitySource("website", file, batch_size=4, workers=0))

    with pytest.raises(PermissionError, match="token expired"):
        sync_source(engine=engine, source=source, now=NOW)
