"""prefect.yaml stays in step with the code: every deployment loads its flow and schedule."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def test_every_flow_has_a_deployment_that_loads_with_a_valid_schedule() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"ingest", "requalify", "nurture", "handoff", "pipeline"}
    for name, deployment in deployments.items():
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        assert isinstance(flow, Flow) and flow.name == name
        assert deployment["work_pool"]["name"] == "leadflow"
        for schedule in deployment["schedules"]:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        # Parameters are pydantic models, so the UI renders a form with descriptions.
        schema = flow.parameters.model_dump()
        assert schema["properties"]["params"]["$ref"].startswith("#/definitions/")
