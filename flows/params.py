"""Flow parameters as pydantic models, so the Prefect UI renders a form with descriptions.

An opened workspace rides along as a private attribute (`handing`): pydantic leaves it out of the
form's schema and of the serialised parameters Prefect stores, and Prefect hands the same parameters
object (private attributes included) to a subflow, so the pipeline's steps share one workspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, Field, PrivateAttr

from leadflow.leads.workspace import Workspace


class RunParams(BaseModel):
    workspace: str | None = Field(
        default=None, description="Workspace folder; empty means LEADFLOW_WORKSPACE or the working directory."
    )
    as_of: datetime | None = Field(
        default=None, description="Run as if it were this time (UTC); empty means now. For replays and tests."
    )
    _opened: Workspace | None = PrivateAttr(default=None)

    @property
    def opened(self) -> Workspace | None:
        """The workspace the caller opened for this run, if it handed one down."""
        return self._opened

    def handing(self, ws: Workspace) -> Self:
        """These parameters with an opened workspace for the run to use; the caller keeps closing it."""
        params = self.model_copy()
        params._opened = ws
        return params


class IngestParams(RunParams):
    batch_size: int = Field(
        default=50_000,
        ge=1,
        le=100_000,
        description="File records stored per transaction (bigger pages load big files faster; see BENCHMARKS.md).",
    )
    fail_on_source_error: bool = Field(
        default=True,
        description="End the run Failed when a source fails (after the other sources and the report).",
    )


class RequalifyParams(RunParams):
    shard_size: int = Field(default=50_000, ge=100, description="Leads per task run.")
    processes: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Processes scoring shards side by side on this worker; 0 means one per CPU core, at most 4 "
        "(only when the round has more than one shard). The extra processes share the round like other workers.",
    )
    full: bool = Field(
        default=False,
        description="Rescore every lead. Otherwise only leads with new activity or profile data, or whose "
        "decaying score may cross a threshold by now (a changed rule set always triggers a full run).",
    )
    wait_for_round_seconds: int = Field(
        default=1200,
        ge=0,
        description="When other workers still hold shards of this round, wait this long for them to finish "
        "(so nurture and handoff see the whole round). A dead worker's shard is taken over after 15 minutes.",
    )
    max_lead_events: int = Field(
        default=500,
        ge=0,
        le=10_000,
        description="Per-lead Prefect events (leadflow.lead.mql / .sql) at most per run; one summary event "
        "always carries the full counts.",
    )


class NurtureParams(RunParams):
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Emails claimed per batch.")
    dry_run: bool = Field(
        default=False,
        description="Report what would be sent to whom, and why anything would not be, without sending or "
        "changing anything (enrollments are decided and then rolled back).",
    )
    fail_on_held_templates: bool = Field(
        default=True,
        description="End the run Failed when a step was held because its template fails (after the other "
        "emails went out); the held emails go out on the first run after the template is fixed.",
    )


class HandoffParams(RunParams):
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Handoffs (and notifications) claimed per batch.")
    max_deliveries: int | None = Field(
        default=None,
        ge=1,
        description="At most this many deliveries per destination (and notifications) in a run; empty: the whole "
        "backlog, in batches. What is left shows in the report and as a leadflow.handoff.backlog event.",
    )


class PipelineParams(RunParams):
    shard_size: int = Field(default=50_000, ge=100, description="Leads per requalify task run.")
    processes: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Requalify: processes scoring shards side by side on this worker; 0 means one per CPU core, at "
        "most 4 (only when the round has more than one shard). The extra processes share the round like other "
        "workers.",
    )
