"""Flows by name, so the CLI and deployments start them the same way."""

from __future__ import annotations

from typing import Any

from flows.handoff import handoff_flow
from flows.ingest import ingest_flow
from flows.nurture import nurture_flow
from flows.params import HandoffParams, IngestParams, NurtureParams, PipelineParams, RequalifyParams
from flows.pipeline import pipeline_flow
from flows.requalify import requalify_flow

FLOWS: dict[str, tuple[Any, type]] = {
    "pipeline": (pipeline_flow, PipelineParams),
    "ingest": (ingest_flow, IngestParams),
    "requalify": (requalify_flow, RequalifyParams),
    "nurture": (nurture_flow, NurtureParams),
    "handoff": (handoff_flow, HandoffParams),
}


def run(name: str, workspace: str | None, **params: Any) -> Any:
    """Run a flow in this process (a temporary Prefect server starts if none is configured)."""
    flow, model = FLOWS[name]
    return flow(model(workspace=workspace, **params))
