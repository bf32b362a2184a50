"""The fast ingest paths: parsing in worker processes, and SQLite's bulk-load mode for the lead index.

Both must store exactly what the plain path stores; the bulk mode must survive a process killed
midway (a real subprocess, SIGKILLed) without losing, duplicating or leaving the index missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select

import leadflow.connectors.files
import leadflow.leads.db.bulkload
import leadflow.leads.ingest.activity_insert
from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.pages import Page
from leadflow.connectors.sync import sync_source
from leadflow.leads.db.bulkload import LEAD_INDEX, worth_dropping
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import Activity, ConnectorCursor, Lead, Quarantine
from tests import factories as make
from tests.factories import jsonl, raw_event

NOW = datetime(2026, 10, 1, 12, 0)
ROOT = Path(__file__).resolve().parents[2]


def _messy_file(path: Path, events: int = 3000) -> Path:
    """Good lines with profiles, properties and repeated ids, among every kind of bad line and blank ones."""
    lines = []
    for n in range(1, events + 1):
        event = raw_event(n, email=f"Lead{n % 97}@Example.com ", at=f"2026-09-{n % 28 + 1:02d}T{n % 24:02d}:00:00Z")
        if n % 3 == 0:
            event["properties"] = {"utm_source": "x" * (n % 5), "n": n}
        if n % 97 == n % 194:
            event["lead"] = {"company": f"Company {n % 97}", "company_size": n % 500, "country": "nl"}
        if n % 50 == 0:
            event["id"] = f"e{n - 7}"  # the same event again
        line = json.dumps(event)
        if n % 211 == 0:
            line = line[:-5]  # cut short: bad JSON
        elif n % 173 == 0:
            line = json.dumps({**event, "type": "page_visit"})
        elif n % 157 == 0:
            line = json.dumps({**event, "at": "2027-06-01T00:00:00Z"})
        elif n % 131 == 0:
            line = json.dumps({**event, "at": "2026-09-01T10:00:00+02:00"})  # valid, the general path
        elif n % 149 == 0:
            line = line[:-1] + ', "big": 123456789012345678901234567890}'  # orjson refuses, json reads
        lines.append(line + "\n")
        if n % 101 == 0:
            lines.append("\n" if n % 2 else "   \r\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _pages(source: FileActivitySource, file: Path, cursor: dict[str, Any] | None = None) -> list[Page]:
    return list(source.pages(file, cursor, now=NOW))


def _shape(pages: list[Page]) -> list[tuple[Any, ...]]:
    return [(p.stream, [list(c) for c in p.records.columns], p.rejected, p.cursor) for p in pages]  # type: ignore[attr-defined]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks, so pages straddle chunk ends."""
    monkeypatch.setattr(leadflow.connectors.files, "CHUNK_BYTES", 7_000)


def test_worker_processes_give_the_same_pages_records_rejects_and_cursors(tmp_path: Path, small_chunks: None) -> None:
    file = _messy_file(tmp_path / "activity.jsonl")
    single = _pages(FileActivitySource("web", file, batch_size=97, workers=0), file)
    parallel = _pages(FileActivitySource("web", file, batch_size=97, workers=2, parallel_min_bytes=0), file)

    assert len(single) > 20 and sum(len(p.rejected) for p in single) > 40
    assert _shape(parallel) == _shape(single)
    # and from a cursor in the middle of the file
    middle = single[len(single) // 2].cursor
    resumed = _pages(FileActivitySource("web", file, batch_size=97, workers=2, parallel_min_bytes=0), file, middle)
    assert _shape(resumed) == _shape(single[len(single) // 2 + 1 :])


def test_chunk_size_does_not_change_the_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = _messy_file(tmp_path / "activity.jsonl", events=800)
    one_chunk = _pages(FileActivitySource("web", file, batch_size=50, workers=0), file)
    monkeypatch.setattr(leadflow.connectors.files, "CHUNK_BYTES", 1)  # a line per chunk
    assert _shape(_pages(FileActivitySource("web", file, batch_size=50, workers=0), file)) == _shape(one_chunk)


def _stored(engine: Engine) -> dict[str, Any]:
    with session_scope(engine) as session:
        return {
            "activity": session.execute(
                select(
                    Activity.source,
                    Activity.source_id,
                    Lead.email,
                    Activity.type,
                    Activity.occurred_at,
                    Activity.target,
                    Activity.properties,
                )
                .join(Lead, Lead.id == Activity.lead_id)
                .order_by(Activity.id)
            ).all(),
            "quarantine": session.execute(
                select(Quarantine.location, Quarantine.reason, Quarantine.detail, Quarantine.raw).order_by(
                    Quarantine.id
                )
            ).all(),
            "cursors": session.execute(
                select(ConnectorCursor.source, ConnectorCursor.stream, ConnectorCursor.value).order_by(
                    ConnectorCursor.stream
                )
            ).all(),
            "leads": session.execute(
                select(Lead.email, Lead.company, Lead.company_size, Lead.country, Lead.last_activity_at).order_by(
                    Lead.email
                )
            ).all(),
        }


def _sqlite(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def _index_names(engine: Engine) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes("activity")}


def test_parallel_and_bulk_ingest_store_exactly_what_the_plain_path_stores(
    tmp_path: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = _messy_file(tmp_path / "activity.jsonl")
    plain, fast = _sqlite(tmp_path / "plain.db"), _sqlite(tmp_path / "fast.db")
    sync_source(engine=plain, source=FileActivitySource("web", file, batch_size=97, workers=0), now=NOW)
    monkeypatch.setattr(leadflow.leads.db.bulkload, "MIN_ROWS", 0)
    sync_source(
        engine=fast, source=FileActivitySource("web", file, batch_size=97, workers=2, parallel_min_bytes=0), now=NOW
    )

    assert LEAD_INDEX in _index_names(fast)
    assert _stored(fast) == _stored(plain)
    assert len(_stored(plain)["quarantine"]) > 40


class _Watching:
    """A file source that records, at every page, whether the lead index exists."""

    def __init__(self, source: FileActivitySource, engine: Engine) -> None:
        self.source, self.engine, self.name, self.seen = source, engine, source.name, []

    def streams(self) -> list[Path]:
        return self.source.streams()

    def estimated_rows(self, stream: Path, cursor: dict[str, Any] | None) -> int:
        return self.source.estimated_rows(stream, cursor)

    def pages(self, stream: Path, cursor: dict[str, Any] | None, *, now: datetime) -> Iterator[Page]:
        for page in self.source.pages(stream, cursor, now=now):
            self.seen.append(LEAD_INDEX in _index_names(self.engine))
            yield page


def test_a_big_run_drops_the_lead_index_and_builds_it_again_at_the_end(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leadflow.leads.db.bulkload, "MIN_ROWS", 100)
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(*(raw_event(n) for n in range(1, 1001))), encoding="utf-8")
    source = _Watching(FileActivitySource("web", file, batch_size=300), engine)

    totals = sync_source(engine=engine, source=source, now=NOW)

    assert totals.inserted == 1000
    # Never on PostgreSQL; on SQLite the index is gone while the pages go in.
    assert source.seen == ([True] * 4 if engine.dialect.name == "postgresql" else [False] * 4)
    assert LEAD_INDEX in _index_names(engine)


def test_a_small_run_keeps_the_index(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(*(raw_event(n) for n in range(1, 101))), encoding="utf-8")
    source = _Watching(FileActivitySource("web", file, batch_size=30), engine)
    sync_source(engine=engine, source=source, now=NOW)
    assert source.seen == [True] * 4


def test_the_rule_weighs_new_rows_against_the_table() -> None:
    assert worth_dropping(existing_rows=0, new_rows=1_000_000)
    assert worth_dropping(existing_rows=2_000_000, new_rows=1_000_000)
    assert worth_dropping(existing_rows=5_000_000, new_rows=1_000_000)  # a big index: keeping it costs most
    assert worth_dropping(existing_rows=1_000_000, new_rows=200_000)
    assert not worth_dropping(existing_rows=2_000_000, new_rows=349_000)  # 0.175 of 2 M is 350,000
    assert worth_dropping(existing_rows=2_000_000, new_rows=351_000)
    assert not worth_dropping(existing_rows=3_000_000, new_rows=449_000)  # a sixth, below 0.15 of 3 M
    assert worth_dropping(existing_rows=3_000_000, new_rows=451_000)
    assert not worth_dropping(existing_rows=20_000_000, new_rows=1_999_000)
    assert not worth_dropping(existing_rows=0, new_rows=leadflow.leads.db.bulkload.MIN_ROWS - 1)


def test_upgrade_builds_a_lead_index_a_killed_run_left_missing(tmp_path: Path) -> None:
    engine = _sqlite(tmp_path / "a.db")
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP INDEX {LEAD_INDEX}")
    upgrade(engine)
    assert LEAD_INDEX in _index_names(engine)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    from pathlib import Path
    sys.path.insert(0, {root!r})
    import leadflow.leads.db.bulkload
    from leadflow.connectors.files import FileActivitySource
    from leadflow.connectors.sync import sync_source
    from leadflow.leads.db.engine import make_engine

    leadflow.leads.db.bulkload.MIN_ROWS = 0

    class DiesAfterThreePages(FileActivitySource):
        def pages(self, file, cursor, *, now):
            for n, page in enumerate(super().pages(file, cursor, now=now)):
                if n == 3:  # pages 0-2 are committed with their cursors: die the hard way
                    os.kill(os.getpid(), signal.SIGKILL)
                yield page

    source = DiesAfterThreePages("web", Path({file!r}), batch_size=97, workers=2, parallel_min_bytes=0)
    sync_source(engine=make_engine("sqlite:///" + {db!r}), source=source, now=datetime(2026, 10, 1, 12, 0))
    """
)


def test_a_bulk_run_killed_midway_loses_and_duplicates_nothing_and_the_next_run_restores_the_index(
    tmp_path: Path, small_chunks: None
) -> None:
    file = _messy_file(tmp_path / "activity.jsonl")
    expected = _sqlite(tmp_path / "expected.db")
    sync_source(engine=expected, source=FileActivitySource("web", file, batch_size=97, workers=0), now=NOW)
    db = tmp_path / "killed.db"
    engine = _sqlite(db)

    script = KILLED_RUN.format(root=str(ROOT), file=str(file), db=str(db))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ)
    assert run.returncode == -signal.SIGKILL, run.stderr

    half = _stored(engine)
    assert 0 < len(half["activity"]) < len(_stored(expected)["activity"])
    assert LEAD_INDEX not in _index_names(engine)  # the killed run never got to build it again

    sync_source(engine=engine, source=FileActivitySource("web", file, batch_size=97, workers=0), now=NOW)
    assert LEAD_INDEX in _index_names(engine)
    assert _stored(engine) == _stored(expected)


def test_a_source_name_with_quotes_and_percent_signs_is_stored_as_it_is(engine: Engine, tmp_path: Path) -> None:
    """The source name is written into the insert statement as a literal: it must stay data."""
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(raw_event(1), raw_event(2)), encoding="utf-8")
    name = "it's 100%s; DROP TABLE lead; --"
    totals = sync_source(engine=engine, source=FileActivitySource(name, file), now=NOW)
    assert totals.inserted == 2
    with session_scope(engine) as session:
        assert set(session.execute(select(Activity.source)).scalars()) == {name}
        assert session.execute(select(Lead.id)).all()


@pytest.mark.parametrize("rows_per_lead", [0, 10**9], ids=["lead-by-lead", "whole-index"])
def test_both_ways_of_catching_up_the_leads_give_the_same_last_activity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_lead: int
) -> None:
    """The catch-up reads the lead index whole or lead by lead; repeated ids with other leads and later
    times (the messy file has them) must move no lead either way, and earlier activity must count."""
    file = _messy_file(tmp_path / "activity.jsonl")
    expected, engine = _sqlite(tmp_path / "expected.db"), _sqlite(tmp_path / "caught-up.db")
    for target in (expected, engine):  # a history before the file, newer than some of it for some leads
        with session_scope(target) as session:
            for n in range(0, 97, 3):
                session.add(make.lead(f"lead{n}@example.com", last_activity_at=datetime(2026, 9, 15, 12, 0)))
    sync_source(engine=expected, source=FileActivitySource("web", file, batch_size=97, workers=0), now=NOW)
    monkeypatch.setattr("leadflow.leads.ingest.activity_insert.SCAN_ROWS_PER_LEAD", rows_per_lead)
    sync_source(engine=engine, source=FileActivitySource("web", file, batch_size=97, workers=0), now=NOW)

    with session_scope(expected) as session:
        # What the leads' last activity must be: their newest stored row, or the history if newer.
        newest = dict(
            session.execute(
                select(Lead.email, func.max(Activity.occurred_at)).join(Activity).group_by(Lead.email)
            ).all()
        )
    stored = {row.email: row.last_activity_at for row in _stored(engine)["leads"]}
    assert stored == {
        email: max(at, datetime(2026, 9, 15, 12, 0)) if int(email[4:].split("@")[0]) % 3 == 0 else at
        for email, at in newest.items()
    }
    assert _stored(engine)["leads"] == _stored(expected)["leads"]


def test_a_bulk_run_hands_its_connections_back_checking_foreign_keys_and_leaves_no_orphan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk runs (SQLite only) store pages without SQLite's per-row foreign-key check; every lead id must
    still exist, and the connections go back to the pool with the check on and their usual page cache."""
    engine = _sqlite(tmp_path / "bulk.db")
    monkeypatch.setattr(leadflow.leads.db.bulkload, "MIN_ROWS", 100)
    with engine.connect() as connection:
        cache_size = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    file = _messy_file(tmp_path / "activity.jsonl")

    totals = sync_source(engine=engine, source=FileActivitySource("web", file, batch_size=300), now=NOW)

    assert totals.inserted > 2000
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        for connection in (a, b, c):
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.info.get(leadflow.leads.db.bulkload.BULK_LOAD) is None
        assert a.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert a.exec_driver_sql("PRAGMA threads").scalar_one() == 0
        assert {x.exec_driver_sql("PRAGMA cache_size").scalar_one() for x in (a, b, c)} <= {
            cache_size,
            -leadflow.leads.ingest.activity_insert.SQLITE_CACHE_KIB,
        }
