"""The requalify run's report: what this run scored, its stage changes, and the round it shared."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import Engine

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.requalify.run import BatchResult
from leadflow.leads.work.claims import Round, round_totals


class StageMove(BaseModel):
    from_stage: str
    to_stage: str
    leads: int


class RequalifyReport(BaseModel):
    ruleset_version: str
    mode: str = "full"
    shards: int = 0
    leads: int = 0
    rescored: int = 0
    moves: list[StageMove] = Field(default_factory=list)
    round_id: int | None = None  # the shared round this run worked on (see leads/work/claims.py)
    round_shards: int = 0  # shards in that round, across every worker
    joined: bool = False  # True: another run planned the round and this one helped
    round_leads: int = 0  # leads scored in the whole round so far, by every worker
    round_workers: int = 0  # runs that scored shards of the round

    @property
    def changed(self) -> int:
        return sum(m.leads for m in self.moves)


def requalify_report(
    engine: Engine, config: WorkspaceConfig, run: Round, scored: BatchResult, shards: int
) -> RequalifyReport:
    """This run's `scored` leads over its `shards`, beside the whole round's totals (every worker's)."""
    whole = None
    if run.id is not None:
        with session_scope(engine) as session:
            whole = round_totals(session, run.id)
    return RequalifyReport(
        ruleset_version=config.scoring.version,
        mode=run.mode,
        shards=shards,
        round_id=run.id,
        round_shards=run.shards,
        joined=run.joined,
        round_leads=whole.leads if whole else 0,
        round_workers=whole.workers if whole else 0,
        leads=scored.leads,
        rescored=scored.rescored,
        moves=[StageMove(from_stage=f, to_stage=t, leads=n) for (f, t), n in sorted(scored.moves.items())],
    )
