"""Opening a workspace for a flow run: settings, validated config, a migrated database.

The config is validated before the database is touched, so a typo in leadflow.yaml stops the
run with a clear message and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from leadflow.leads.config.settings import Settings, load_settings
from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import make_engine, upgrade
from leadflow.leads.db.models import utcnow


@dataclass(frozen=True)
class Workspace:
    settings: Settings
    config: WorkspaceConfig
    engine: Engine

    def path(self, relative: str) -> Path:
        """A path from leadflow.yaml, relative to the config file's folder."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else (self.settings.config_file.parent / candidate).resolve()


def open_workspace(folder: str | None = None) -> Workspace:
    """Settings, then config (may raise ConfigError), then the database, migrated to head."""
    settings = load_settings(Path(folder) if folder else None)
    config = load_config(settings.config_file)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    return Workspace(settings=settings, config=config, engine=engine)


def run_time(as_of: datetime | None) -> datetime:
    """The run's notion of now, as naive UTC like every timestamp in the database."""
    if as_of is None:
        return utcnow()
    if as_of.tzinfo is None:
        return as_of
    return as_of.astimezone(UTC).replace(tzinfo=None)


def run_clock(as_of: datetime | None) -> Callable[[], datetime]:
    """The clock senders read at each claim and each server answer: the wall clock, naive UTC.

    With `as_of` (a replay, a test) it starts at `as_of` and runs at wall-clock pace, so what the run
    queued at `as_of` is due for it. Scoring and queueing keep `run_time`'s fixed moment.
    """
    if as_of is None:
        return utcnow
    start, began = run_time(as_of), time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)
