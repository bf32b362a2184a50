"""A demo workspace's data in a database without Prefect: generated files, ingested through the file source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.sync import sync_source
from leadflow.demo.data import generate_demo, write_demo
from leadflow.leads.db.engine import make_engine, upgrade

DEMO_END = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def ingest_demo(folder: Path, *, leads: int, seed: int = 7) -> Path:
    """Write data/activity.jsonl and data/outcomes.csv under `folder`, ingest them into `folder`/leadflow.db.

    Returns the outcomes file.
    """
    activity, outcomes = write_demo(folder / "data", generate_demo(seed=seed, leads=leads, end=DEMO_END))
    engine = make_engine(f"sqlite:///{folder}/leadflow.db")
    upgrade(engine)
    try:
        sync_source(engine=engine, source=FileActivitySource("website", activity), now=DEMO_END.replace(tzinfo=None))
    finally:
        engine.dispose()
    return outcomes
