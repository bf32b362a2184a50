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
        flow = load_flow_from_entrypoint(deployment["entrypoint"])  # a module path: the installed package
        assert isinstance(flow, Flow) and flow.name == name
        assert deployment["work_pool"]["name"] == "leadflow"
        for schedule in deployment["schedules"]:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        # Parameters are pydantic models, so the UI renders a form with descriptions.
        schema = flow.parameters.model_dump()
        assert schema["properties"]["params"]["$ref"].startswith("#/definitions/")


def test_prefect_yaml_and_leadflow_serve_declare_the_same_deployments_with_concurrency_rules() -> None:
    from leadflow.flows.deployments import DEPLOYMENTS, runner_deployments

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    in_yaml = {
        d["name"]: (
            d["schedules"][0]["cron"],
            d["schedules"][0]["timezone"],
            d["schedules"][0].get("active", True),
            d["tags"],
            d["description"],
            d["concurrency_limit"]["limit"],
            d["concurrency_limit"]["collision_strategy"],
        )
        for d in spec["deployments"]
    }
    in_python = {
        s.name: (s.cron, s.timezone, s.active, s.tags, s.description, 1, s.collision.value) for s in DEPLOYMENTS
    }
    assert in_yaml == in_python

    served = {d.name: d for d in runner_deployments("/srv/leads")}
    assert set(served) == set(in_python)
    for name, deployment in served.items():
        (schedule,) = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == in_python[name][:2]
        assert schedule.active == in_python[name][2]
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy.value == in_python[name][6]
        assert deployment.parameters == {"params": {"workspace": "/srv/leads"}}
    nightly = {d.name: d.schedules[0].active for d in runner_deployments(pipeline_schedule=True)}
    assert nightly == {"ingest": False, "requalify": False, "nurture": False, "handoff": False, "pipeline": True}


def test_leadflow_ops_limits_prints_the_prefect_gcl_lines_the_docs_show() -> None:
    from typer.testing import CliRunner

    from leadflow.cli.main import app

    result = CliRunner().invoke(app, ["ops", "limits", "--print"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "prefect gcl create leadflow-smtp --limit 2" in lines
    assert "prefect gcl create leadflow-hubspot --limit 10 --slot-decay-per-second 10" in lines
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert all(line in docs for line in lines)
