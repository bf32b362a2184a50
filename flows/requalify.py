"""Requalify flow: rescore the leads that need it (or all of them) and move stages by the rules."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from flows.params import RequalifyParams
from flows.reports import RequalifyReport, StageMove, publish_requalify
from flows.workspace import Workspace, open_workspace, run_time
from leads.db import session_scope
from leads.requalify import (
    BatchResult,
    due_lead_ids,
    make_scorer,
    needs_full_recompute,
    plan_shards,
    remember_ruleset,
    requalify_batch,
)

IN_LIST = 5000  # ids per statement: well under every database's parameter limit
FULL_WHEN_DUE_SHARE = 0.3  # scanning id ranges beats id lists once this share of leads is due


@task(task_run_name="score leads {lo}-{hi}", cache_policy=NONE)
def score_range(ws: Workspace, lo: int, hi: int, now: datetime, run_id: str | None) -> BatchResult:
    with session_scope(ws.engine) as session:
        return requalify_batch(session=session, config=ws.config, now=now, lo=lo, hi=hi, run_id=run_id)


@task(task_run_name="score {label}", cache_policy=NONE)
def score_ids(ws: Workspace, ids: list[int], label: str, now: datetime, run_id: str | None) -> BatchResult:
    total = BatchResult()
    with session_scope(ws.engine) as session:
        scorer = make_scorer(session, ws.config)
    for start in range(0, len(ids), IN_LIST):
        with session_scope(ws.engine) as session:
            chunk = ids[start : start + IN_LIST]
            total = total.merge(
                requalify_batch(session=session, config=ws.config, now=now, ids=chunk, run_id=run_id, scorer=scorer)
            )
    return total


@flow(name="requalify")
def requalify_flow(params: RequalifyParams = RequalifyParams()) -> RequalifyReport:
    """Recompute scores and move leads through the funnel: only the leads that need it, unless `full`."""
    ws = open_workspace(params.workspace)
    now = run_time(params.as_of)
    run_id = str(flow_run.id) if flow_run.id else None
    with session_scope(ws.engine) as session:
        shards = plan_shards(session, params.shard_size)
        full = params.full or needs_full_recompute(session, ws.config)
        due = [] if full else due_lead_ids(session, now)
    total_leads = sum(hi - lo + 1 for lo, hi in shards)
    if not full and total_leads and len(due) > FULL_WHEN_DUE_SHARE * total_leads:
        full = True
    total = BatchResult()
    if full:
        for lo, hi in shards:
            total = total.merge(score_range(ws, lo, hi, now, run_id))
        with session_scope(ws.engine) as session:
            remember_ruleset(session, ws.config, now)
    else:
        for start in range(0, len(due), params.shard_size):
            batch = due[start : start + params.shard_size]
            total = total.merge(score_ids(ws, batch, f"{len(batch)} due leads from id {batch[0]}", now, run_id))
    report = RequalifyReport(
        ruleset_version=ws.config.scoring.version,
        mode="full" if full else "incremental",
        shards=len(shards) if full else -(-len(due) // params.shard_size),
        leads=total.leads,
        rescored=total.rescored,
        moves=[StageMove(from_stage=f, to_stage=t, leads=n) for (f, t), n in sorted(total.moves.items())],
    )
    publish_requalify(report)
    return report
