"""Requalify flow: rescore the leads that need it (or all of them) and move stages by the rules.

The work is a round of shards in the database (`leadflow.leads.work.claims`): this run joins the open round or
plans one, then claims shards one at a time until none is left, one task run per shard. Runs on
other workers do the same, so they share the round and no lead is scored twice in it.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE

from leadflow.flows.events import emit_stage_events
from leadflow.flows.logs import log_counts
from leadflow.flows.ops import publish_run_steps, wait_until, worker_id
from leadflow.flows.params import RequalifyParams
from leadflow.flows.progress import step_progress
from leadflow.flows.reports import publish_requalify
from leadflow.flows.workspace import Workspace, run_time, run_workspace
from leadflow.leads.db.engine import session_scope
from leadflow.leads.requalify.helpers import default_processes, finish_helpers, start_helpers
from leadflow.leads.requalify.report import RequalifyReport, requalify_report
from leadflow.leads.requalify.rounds import JOB, plan_round, remember_full_round, score_shard
from leadflow.leads.requalify.run import BatchResult
from leadflow.leads.work.claims import Round, Shard, claim_shard, close_round, open_round, round_totals
from leadflow.leads.work.progress import Progress


@task(task_run_name="score shard {shard.label}", cache_policy=NONE)
def score(ws: Workspace, shard: Shard, now: datetime, worker: str) -> BatchResult | None:
    return score_shard(ws.engine, ws.config, shard, now=now, worker=worker, run_id=worker)


def work_round(ws: Workspace, run: Round, me: str, params: RequalifyParams) -> tuple[BatchResult, int]:
    """Claim and score shards until none is left (with `params.processes - 1` helper processes beside this
    one), then wait for those other workers hold, so the steps after this one (nurture, handoff) see the
    whole round. Returns what this run scored, and its shards."""
    total, mine = BatchResult(), 0
    if run.id is None:  # nothing to score; a full run over no leads still records the rule set
        if run.mode == "full":
            with session_scope(ws.engine) as session:
                remember_full_round(ws.config, run.as_of)(session)
        return total, mine

    extra = min(params.processes or default_processes(), run.shards) - 1
    helpers = (
        start_helpers(extra, workspace=params.workspace, round_id=run.id, now=run.as_of, worker=me) if extra > 0 else []
    )

    round_id = run.id  # known here: a closure's reads are not narrowed

    def counted(progress: Progress) -> None:  # every worker's shards: the bar is the round's
        with session_scope(ws.engine) as session:
            progress.advance(round_totals(session, round_id).done - progress.done)

    def drained() -> bool:
        nonlocal total, mine
        while (shard := claim_shard(ws.engine, round_id=round_id, worker=me)) is not None:
            result = score(ws, shard, run.as_of, me)
            if result is not None:
                total, mine = total.merge(result), mine + 1
            counted(progress)
        if any(h.failed() for h in helpers):
            finish_helpers(helpers)  # raises, naming the helper and its last error line
        on_close = remember_full_round(ws.config, run.as_of) if run.mode == "full" else None
        return close_round(ws.engine, round_id=round_id, worker=me, on_close=on_close) is not None

    try:
        with step_progress("requalify", unit="shards", total=run.shards) as progress:
            wait_until(drained, timeout=params.wait_for_round_seconds, what=f"requalify round {run.id}")
    finally:
        helped, shards = finish_helpers(helpers)
    return total.merge(helped), mine + shards


@flow(name="requalify")
def requalify_flow(params: RequalifyParams = RequalifyParams()) -> RequalifyReport:
    """Recompute scores and move leads through the funnel: only the leads that need it, unless `full`."""
    with run_workspace(params) as ws:
        return requalify(ws, params)


def requalify(ws: Workspace, params: RequalifyParams) -> RequalifyReport:
    """The requalify run's work, in the workspace its flow run was given."""
    me = worker_id()
    run = open_round(
        ws.engine,
        job=JOB,
        worker=me,
        plan=lambda s: plan_round(
            s, ws.config, now=run_time(params.as_of), shard_size=params.shard_size, full=params.full
        ),
    )
    total, mine = work_round(ws, run, me, params)
    report = requalify_report(ws.engine, ws.config, run, total, mine)
    publish_requalify(report)
    log_counts(report)
    emit_stage_events(ws.engine, run_id=me, cap=params.max_lead_events)
    publish_run_steps()
    return report
