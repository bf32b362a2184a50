"""The requalify flow with helper processes: the same stages as one process, the round shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from leadflow.flows.ingest import ingest_flow
from leadflow.flows.params import IngestParams, RequalifyParams
from leadflow.flows.requalify import requalify_flow
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import Lead, WorkShard
from tests.flows.test_pipeline import END, make_workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")


def stages(url: str) -> dict[str, tuple[str, float]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Lead.email, Lead.stage, Lead.score)).all()
    engine.dispose()
    return {email: (stage, score) for email, stage, score in rows}


def test_two_processes_score_the_round_as_one_does(tmp_path: Path, sqlite_url: str) -> None:
    twin_url = f"sqlite:///{tmp_path}/twin.db"
    results = {}
    for name, url, processes in (("one", twin_url, 1), ("two", sqlite_url, 2)):
        folder = make_workspace(tmp_path / name, url, leads=1000)
        ingest_flow(IngestParams(workspace=str(folder), as_of=END))
        results[name] = requalify_flow(
            RequalifyParams(workspace=str(folder), as_of=END, shard_size=100, processes=processes, full=True)
        )
    one, two = results["one"], results["two"]
    assert two.round_shards == one.round_shards == 10
    assert two.round_workers == 2 and one.round_workers == 1  # the helper took shards of the round
    assert two.shards == 10 and two.leads == one.leads == 1000  # its shards count in this run's report
    assert two.moves == one.moves and sum(m.leads for m in two.moves) > 0
    assert stages(sqlite_url) == stages(twin_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        workers = {w for (w,) in conn.execute(select(WorkShard.claimed_by))}
    engine.dispose()
    assert len(workers) == 2 and any(w.endswith("/p1") for w in workers)
