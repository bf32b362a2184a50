"""Requalify flow: rescore every lead shard by shard and move stages by the rules."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from flows.params import RequalifyParams
from flows.reports import RequalifyReport, StageMove, publish_requalify
from flows.workspace import Workspace, open_workspace, run_time
from leads.db import session_scope
from leads.requalify import ShardResult, plan_shards, requalify_shard


@task(task_run_name="score leads {lo}-{hi}", cache_policy=NONE)
def score_shard(ws: Workspace, lo: int, hi: int, now: datetime, run_id: str | None) -> ShardResult:
    with session_scope(ws.engine) as session:
        return requalify_shard(session=session, config=ws.config, lo=lo, hi=hi, now=now, run_id=run_id)


@flow(name="requalify")
def requalify_flow(params: RequalifyParams = RequalifyParams()) -> RequalifyReport:
    """Recompute fit and engagement scores and move leads through the funnel."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    with session_scope(ws.engine) as session:
        shards = plan_shards(session, params.shard_size)
    total = ShardResult()
    for lo, hi in shards:
        total = total.merge(score_shard(ws, lo, hi, now, str(flow_run.id) if flow_run.id else None))
    report = RequalifyReport(
        ruleset_version=ws.config.scoring.version,
        shards=len(shards),
        leads=total.leads,
        rescored=total.rescored,
        moves=[StageMove(from_stage=f, to_stage=t, leads=n) for (f, t), n in sorted(total.moves.items())],
    )
    publish_requalify(report)
    return report
