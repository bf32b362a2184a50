"""Sending every due outbox row through a FileOutbox, as the nurture flow's send task does, for tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from leadflow.connectors.mail import FileOutbox
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import claim, send_claimed
from leadflow.nurture.outcomes import SendReport
from leadflow.nurture.render import TemplateRenderer


def send_due(engine: Engine, config: WorkspaceConfig, *, links: LinkSigner, folder: Path, now: datetime) -> SendReport:
    """Claim what is due and send it to `folder`/outbox, with templates from `folder`/templates (else shipped)."""
    with session_scope(engine) as session:
        ids = claim(session=session, now=now, limit=100)
    with FileOutbox(folder / "outbox") as transport:
        return send_claimed(
            engine=engine,
            ids=ids,
            config=config,
            renderer=TemplateRenderer(folder / "templates"),
            transport=transport,
            links=links,
            now=now,
        )
