"""A run's long steps leave Prefect progress artifacts on the run page, each ending at 100 %."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from leadflow.flows.params import PipelineParams
from leadflow.flows.pipeline import pipeline_flow
from tests.flows.test_pipeline import END, make_workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _post(path: str, body: dict) -> list[dict]:
    from prefect.settings import PREFECT_API_URL

    # Straight to the REST API, as test_pipeline does: Prefect 3.8.8's client sends nulls its server refuses.
    answer = httpx.post(f"{PREFECT_API_URL.value()}{path}", json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()


def test_a_pipeline_run_shows_each_long_step_as_a_progress_artifact_ending_at_100(
    tmp_path: Path, sqlite_url: str
) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=200)
    state = pipeline_flow(PipelineParams(workspace=str(folder), as_of=END), return_state=True)
    report = state.result()
    parent = str(state.state_details.flow_run_id)
    children = _post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}, "limit": 50})
    runs = [parent, *(run["id"] for run in children)]
    body = {"artifacts": {"flow_run_id": {"any_": runs}, "type": {"any_": ["progress"]}}, "limit": 50, "offset": 0}
    progress = {a["description"].split(":")[0]: a for a in _post("/artifacts/filter", body)}

    assert set(progress) == {"ingest website", "requalify", "send emails", "handoff to file"}
    assert all(a["data"] == 100 for a in progress.values()), progress
    inserted = report.ingest.sources["website"].inserted
    assert progress["ingest website"]["description"] == f"ingest website: {inserted:,} of about {inserted:,} rows done"
    sent = report.nurture.sent
    assert sent > 0 and progress["send emails"]["description"] == f"send emails: {sent:,} of {sent:,} emails done"
    shards = report.requalify.round_shards
    assert progress["requalify"]["description"] == f"requalify: {shards:,} of {shards:,} shards done"
