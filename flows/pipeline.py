"""The pipeline: ingest → requalify → nurture → handoff, each as a subflow with its own report."""

from __future__ import annotations

from prefect import flow

from leadflow.flows.handoff import handoff_flow
from leadflow.flows.ingest import IngestFailed, ingest_flow
from leadflow.flows.nurture import TemplatesHeld, nurture_flow
from leadflow.flows.ops import publish_attention, publish_run_steps
from leadflow.flows.params import HandoffParams, IngestParams, NurtureParams, PipelineParams, RequalifyParams
from leadflow.flows.pipeline_report import PipelineReport, pipeline_report, publish_pipeline
from leadflow.flows.problems import finish
from leadflow.flows.requalify import requalify_flow
from leadflow.flows.workspace import Workspace, run_time, run_workspace
from leadflow.leads.work.problems import summary


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
    report = pipeline_report(
        ingest=ingest,
        requalify=requalify_flow(
            RequalifyParams(**shared, shard_size=params.shard_size, processes=params.processes).handing(ws)
        ),
        nurture=nurture_flow(NurtureParams(**shared, fail_on_held_templates=False).handing(ws)),  # handoff still runs
        handoff=handoff_flow(HandoffParams(**shared).handing(ws)),
    )
    publish_pipeline(report, publish_attention(ws.engine), publish_run_steps())
    if ingest.failed:  # what the run did goes with the error, for `leadflow run`'s summary
        raise IngestFailed(summary(report.problems), report=report)
    if report.nurture.held:
        raise TemplatesHeld(report.nurture.held, report=report)
    return finish(report)
