"""Which rule set the stored scores were computed with: a changed rule set means a full recompute."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.orm import Session

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.ingest.cursors import load_cursor, save_cursor

STATE_SOURCE, STATE_STREAM = "requalify", "state"


def needs_full_recompute(session: Session, config: WorkspaceConfig) -> bool:
    """A changed rule set invalidates every stored score and every scheduled rescore."""
    state = load_cursor(session, source=STATE_SOURCE, stream=STATE_STREAM) or {}
    return state.get("ruleset") != _ruleset_fingerprint(config)


def remember_ruleset(session: Session, config: WorkspaceConfig, now: datetime) -> None:
    save_cursor(
        session,
        source=STATE_SOURCE,
        stream=STATE_STREAM,
        value={"ruleset": _ruleset_fingerprint(config), "full_at": now.isoformat()},
    )


def _ruleset_fingerprint(config: WorkspaceConfig) -> str:
    """The version marketers bump, plus the rules themselves, so an edit without a bump still counts."""
    rules = config.model_dump_json(include={"scoring", "stages", "recycle", "disqualify"})
    return f"{config.scoring.version}:{hashlib.sha256(rules.encode()).hexdigest()[:12]}"
