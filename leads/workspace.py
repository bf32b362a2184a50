"""An opened workspace: settings, the validated config, a migrated database, and the secrets.

`open_workspace` is the one place a workspace is opened. A command or a top-level flow run opens
it once and hands it down, so everything in that run sees one config and shares one engine; the
opener closes it at the end (`with open_workspace(...) as ws:`), which disposes the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine

from leadflow.leads.config.settings import Secrets, Settings, load_settings
from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import make_engine, upgrade


@dataclass(frozen=True)
class Workspace:
    settings: Settings
    config: WorkspaceConfig
    engine: Engine

    @property
    def folder(self) -> Path:
        return self.settings.workspace

    @property
    def secrets(self) -> Secrets:
        """Connector tokens and notification variables: the environment, else the workspace's `.env`."""
        return self.settings.secrets

    def path(self, relative: str) -> Path:
        """A path from leadflow.yaml, relative to the config file's folder."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else (self.settings.config_file.parent / candidate).resolve()

    def close(self) -> None:
        """Close the database connections (a SQLite file is no longer held open)."""
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_workspace(
    folder: Path | str | None = None, *, settings: Settings | None = None, migrate: bool = True
) -> Workspace:
    """Settings (from `folder`, else LEADFLOW_WORKSPACE, else here; or the ones given), then the config
    (may raise ConfigError, before the database is touched), then the database, migrated to head.

    `migrate=False` is for helper processes of a run whose opener already migrated.
    """
    settings = settings or load_settings(Path(folder) if folder else None)
    config = load_config(settings.config_file)
    engine = make_engine(settings.resolved_database_url)
    if migrate:
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return Workspace(settings=settings, config=config, engine=engine)
