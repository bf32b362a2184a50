"""Flows by name, so the CLI and deployments start them the same way."""

from __future__ import annotations

from typing import Any

from prefect import tags

from leadflow.flows.handoff import handoff_flow
from leadflow.flows.ingest import ingest_flow
from leadflow.flows.nurture import nurture_flow
from leadflow.flows.params import HandoffParams, IngestParams, NurtureParams, PipelineParams, RequalifyParams
from leadflow.flows.pipeline import pipeline_flow
from leadflow.flows.requalify import requalify_flow
from leadflow.leads.workspace import Workspace

FLOWS: dict[str, tuple[Any, type]] = {
    "pipeline": (pipeline_flow, PipelineParams),
    "ingest": (ingest_flow, IngestParams),
    "requalify": (requalify_flow, RequalifyParams),
    "nurture": (nurture_flow, NurtureParams),
    "handoff": (handoff_flow, HandoffParams),
}
# Each flow's Prefect tags, on its deployment and on a run started from the CLI alike: automations
# (flows/automations.yaml) and the UI's filters find leadflow's runs by them.
TAGS: dict[str, list[str]] = {
    "pipeline": ["leadflow", "pipeline"],
    "ingest": ["leadflow", "ingest"],
    "requalify": ["leadflow", "scoring"],
    "nurture": ["leadflow", "nurture", "email"],
    "handoff": ["leadflow", "handoff", "sales"],
}
CLI_TAG = "cli"  # a run started by `leadflow run`, not by a schedule


def run(name: str, ws: Workspace, **params: Any) -> Any:
    """Run a flow in this process, in the caller's opened workspace (a temporary Prefect server starts if
    none is configured); the caller closes the workspace."""
    flow, model = FLOWS[name]
    with tags(*TAGS[name], CLI_TAG):
        return flow(model(workspace=str(ws.folder), **params).handing(ws))
