"""The ingest flow with a file big enough for parse workers and SQLite's bulk-load mode (thresholds lowered):
forked from a Prefect task's thread, it reports and stores what the plain path does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

import leadflow.connectors.files
import leadflow.leads.db.bulkload
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.params import IngestParams
from leadflow.leads.db.bulkload import LEAD_INDEX
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import Activity, Lead, Quarantine
from tests.flows.test_pipeline import END, make_workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _ingest(folder: Path, url: str) -> tuple[object, list[tuple[object, ...]], set[str]]:
    report = ingest_flow(IngestParams(workspace=str(folder), as_of=END))
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = [
            tuple(r)
            for r in conn.execute(
                select(Activity.source_id, Lead.email, Activity.occurred_at, Lead.last_activity_at)
                .join(Lead, Lead.id == Activity.lead_id)
                .order_by(Activity.source, Activity.source_id)
            )
        ]
        stored += [tuple(r) for r in conn.execute(select(Quarantine.location, Quarantine.reason, Quarantine.raw))]
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("activity")}
    engine.dispose()
    return report.model_dump(exclude={"duration_s", "started_at", "finished_at"}), stored, indexes


def _workspace(folder: Path, url: str) -> Path:
    make_workspace(folder, url, leads=60)
    activity = folder / "data" / "activity.jsonl"
    lines = activity.read_text().splitlines()
    lines.insert(3, '{"id": "broken-1", "email": "x@example.com", "type": "page_view", "at": ')
    odd = {"id": "t", "email": "y@example.com", "type": "telepathy", "at": "2026-09-01T10:00:00Z"}
    lines.insert(9, json.dumps(odd))
    activity.write_text("\n".join(lines) + "\n")
    return folder


def test_parse_workers_and_bulk_mode_in_a_flow_run_store_what_the_plain_path_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_url = f"sqlite:///{tmp_path / 'plain.db'}"
    fast_url = f"sqlite:///{tmp_path / 'fast.db'}"
    plain = _ingest(_workspace(tmp_path / "plain", plain_url), plain_url)

    monkeypatch.setattr(leadflow.connectors.files, "default_workers", lambda: 2)  # also on a one-CPU machine
    monkeypatch.setattr(leadflow.connectors.files, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(leadflow.connectors.files, "CHUNK_BYTES", 2_000)
    monkeypatch.setattr(leadflow.leads.db.bulkload, "MIN_ROWS", 0)
    fast = _ingest(_workspace(tmp_path / "fast", fast_url), fast_url)

    assert fast == plain
    assert plain[0]["quarantine_by_reason"] == {"bad_json": 1, "unknown_type": 1}  # type: ignore[index]
    assert LEAD_INDEX in fast[2]
