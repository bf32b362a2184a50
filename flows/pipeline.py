"""The pipeline: ingest → requalify → nurture → handoff, each as a subflow with its own report."""

from __future__ import annotations

from prefect import flow

from leadflow.flows.handoff import handoff_flow
from leadflow.flows.ingest import IngestFailed, ingest_flow
from leadflow.flows.nurture import TemplatesHeld, nurture_flow
from leadflow.flows.ops import publish_attention, publish_run_steps
from leadflow.flows.params import HandoffParams, IngestParams, NurtureParams, PipelineParams, RequalifyParams
from leadflow.flows.problems import finish, summary
from leadflow.flows.reports import PipelineReport, publish_pipeline
from leadflow.flows.requalify import requalify_flow
from leadflow.flows.workspace import Workspace, run_time, run_workspace


@flow(name="pipeline")
def pipeline_flow(params: PipelineParams = PipelineParams()) -> PipelineReport:
    """Run the whole loop once: new activity in, leads requalified, nurture sent, SQLs handed off."""
    with run_workspace(params) as ws:
        return pipeline(ws, params)


def pipeline(ws: Workspace, params: PipelineParams) -> PipelineReport:
    """The four steps as subflows, each handed this run's workspace: one config, one engine, one `as_of`."""
    shared = {"workspace": params.workspace, "as_of": run_time(params.as_of)}
    # A failing source (an expired CRM token, say) must not hold back nurture and handoff for
    # everything that did arrive: the pipeline goes on and ends Failed afterwards.
    ingest = ingest_flow(IngestParams(**shared, fail_on_source_error=False).handing(ws))
    report = PipelineReport(
        ingest=ingest,
        requalify=requalify_flow(
            RequalifyParams(**shared, shard_size=params.shard_size, processes=params.processes).handing(ws)
        ),
        nurture=nurture_flow(NurtureParams(**shared, fail_on_held_templates=False).handing(ws)),  # handoff still runs
        handoff=handoff_flow(HandoffParams(**shared).handing(ws)),
    )
    report.problems = [*report.ingest.problems, *report.nurture.problems, *report.handoff.problems]
    publish_pipeline(report, publish_attention(ws.engine), publish_run_steps())
    if ingest.failed:
        failed = IngestFailed(summary(report.problems))
        failed.report = report  # type: ignore[attr-defined]  # what the run did, for `leadflow run`'s summary
        raise failed
    if report.nurture.held:
        held = TemplatesHeld(report.nurture.held)
        held.report = report  # type: ignore[attr-defined]
        raise held
    return finish(report)
