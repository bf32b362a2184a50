"""Requalify as shared work: plan a round of shards, score a claimed shard, close the round.

Built on the public functions of `leadflow.leads.requalify.run` (plan_shards, due_lead_ids, requalify_batch),
`leadflow.leads.requalify.ruleset` (needs_full_recompute, remember_ruleset) and the claims of
`leadflow.leads.work.claims`, so any number of workers can run requalify at once and each lead is scored once per round.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.requalify.ruleset import needs_full_recompute, remember_ruleset
from leadflow.leads.requalify.run import BatchResult, apply_plan, due_lead_ids, plan_shards, score_batch_plan
from leadflow.leads.work.claims import Plan, PlannedShard, Shard, claim_shard, finish_shard, record_shard

JOB = "requalify"
FULL_WHEN_DUE_SHARE = 0.3  # scanning id ranges beats id lists once this share of leads is due


def plan_round(
    session: Session, config: WorkspaceConfig, *, now: datetime, shard_size: int, full: bool = False
) -> Plan:
    """Id ranges for a full recompute, or the due leads in lists of `shard_size` for an incremental run.

    A changed rule set, or more than 30% of the leads due, makes it a full recompute.
    """
    ranges = plan_shards(session, shard_size)
    full = full or needs_full_recompute(session, config)
    due = [] if full else due_lead_ids(session, now)
    total = sum(hi - lo + 1 for lo, hi in ranges)
    if not full and total and len(due) > FULL_WHEN_DUE_SHARE * total:
        full = True
    if full:
        return Plan("full", now, [PlannedShard(lo, hi) for lo, hi in ranges])
    chunks = [due[start : start + shard_size] for start in range(0, len(due), shard_size)]
    return Plan("incremental", now, [PlannedShard(chunk[0], chunk[-1], chunk) for chunk in chunks])


def score_shard(
    engine: Engine,
    config: WorkspaceConfig,
    shard: Shard,
    *,
    now: datetime,
    worker: str,
    run_id: str | None,
    in_list: int = 5000,
) -> BatchResult | None:
    """Score one claimed shard, then mark it done and write it in one transaction; None if the claim was lost.

    The scoring reads in a transaction of its own, ended before the writes start: on SQLite a read
    snapshot cannot become a write once another process has written, and holding the write lock
    while scoring would make workers take turns instead of working side by side.
    """
    with Session(engine) as session:
        if shard.ids is None:
            plans = [score_batch_plan(session=session, config=config, now=now, lo=shard.lo, hi=shard.hi, run_id=run_id)]
        else:
            plans = [
                score_batch_plan(
                    session=session, config=config, now=now, ids=shard.ids[at : at + in_list], run_id=run_id
                )
                for at in range(0, len(shard.ids), in_list)  # ids per statement: under every parameter limit
            ]
        session.rollback()
        if not finish_shard(session, shard, worker=worker):
            session.rollback()
            return None
        result = BatchResult()
        for plan in plans:
            apply_plan(session, plan, now)
            result = result.merge(plan.result)
        record_shard(session, shard, leads=result.leads, changes=sum(result.moves.values()))
        session.commit()
        return result


def drain_round(
    engine: Engine, config: WorkspaceConfig, *, round_id: int, now: datetime, worker: str
) -> tuple[BatchResult, int]:
    """Claim and score shards of the round until none is left; what this worker scored, and how many shards."""
    total, shards = BatchResult(), 0
    while (shard := claim_shard(engine, round_id=round_id, worker=worker)) is not None:
        result = score_shard(engine, config, shard, now=now, worker=worker, run_id=worker)
        if result is not None:
            total, shards = total.merge(result), shards + 1
    return total, shards


def remember_full_round(config: WorkspaceConfig, now: datetime) -> Callable[[Session], None]:
    """The `on_close` of a full round: store the rule set's fingerprint, so the next run can be incremental."""

    def on_close(session: Session) -> None:
        remember_ruleset(session, config, now)

    return on_close
