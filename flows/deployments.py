"""The deployments, in Python: what `leadflow serve` serves, kept equal to prefect.yaml by a test.

prefect.yaml is for a Prefect server with a work pool and workers (`prefect deploy --all`);
`leadflow serve` is the single-machine path: one long-lived process that schedules and runs every
flow itself (Prefect's `serve()`), with the same names, schedules, time zones, tags and
concurrency rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from leadflow.flows.registry import FLOWS, TAGS

TIMEZONE = "Europe/Amsterdam"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    cron: str
    description: str
    tags: list[str]
    collision: ConcurrencyLimitStrategy
    active: bool = True
    timezone: str = TIMEZONE
    parameters: dict[str, Any] = field(default_factory=dict)


ENQUEUE, CANCEL_NEW = ConcurrencyLimitStrategy.ENQUEUE, ConcurrencyLimitStrategy.CANCEL_NEW

DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec("ingest", "*/15 * * * *", "Pull new lead activity from every source in leadflow.yaml.",
                   TAGS["ingest"], CANCEL_NEW),
    DeploymentSpec("requalify", "5 * * * *", "Rescore every lead and move stages by the rules.",
                   TAGS["requalify"], ENQUEUE),
    DeploymentSpec("nurture", "20 8-17 * * 1-5", "Send due nurture emails, during office hours on weekdays.",
                   TAGS["nurture"], ENQUEUE),
    DeploymentSpec("handoff", "*/10 * * * *", "Hand every new SQL to sales, exactly once.",
                   TAGS["handoff"], CANCEL_NEW),
    DeploymentSpec("pipeline", "0 2 * * *",
                   "The whole loop once (ingest, requalify, nurture, handoff). Run on demand, or enable its nightly "
                   "schedule instead of the four above.", TAGS["pipeline"], ENQUEUE, active=False),
)  # fmt: skip


def runner_deployments(
    workspace: str | None = None, *, pipeline_schedule: bool = False, job_variables: dict[str, Any] | None = None
) -> list[Any]:
    """`flow.to_deployment(...)` for every deployment, for `prefect.serve(*deployments)` or `.apply(work_pool_name=)`.

    `pipeline_schedule` turns the nightly pipeline on and the four steps' schedules off. Entrypoints are
    module paths (`leadflow.flows.pipeline.pipeline_flow`): a worker imports the installed leadflow package, so
    no code is copied and no working directory has to match across machines.
    """
    deployments = []
    for spec in DEPLOYMENTS:
        flow, _ = FLOWS[spec.name]
        active = (spec.name == "pipeline") if pipeline_schedule else spec.active
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                schedules=[Cron(spec.cron, timezone=spec.timezone, active=active)],
                concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=spec.collision),
                parameters={"params": {"workspace": workspace}} if workspace else None,
                entrypoint_type=EntrypointType.MODULE_PATH,
                job_variables=job_variables,
            )
        )
    return deployments
