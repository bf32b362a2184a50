"""Process settings from the environment (prefix LEADFLOW_) or a `.env` file in the workspace.

Settings say *where* things are (database, mail server, handoff peer) and hold the secrets;
the workspace config (`leadflow.yaml`) says *what* the business wants. Secrets are SecretStr so
they never print.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where leadflow reads and writes. Relative paths resolve against `workspace`."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    workspace: Path = Field(default=Path("."), description="Folder that holds the config, data and outboxes.")
    database_url: str = Field(
        default="sqlite:///leadflow.db",
        description="SQLAlchemy URL; a relative SQLite path lives in the workspace.",
    )
    config_path: Path = Field(default=Path("leadflow.yaml"), description="The workspace config file.")
    mail_url: str = Field(
        default="file://outbox",
        description="file://DIR writes .eml files; smtp://host:port or smtps://host:port sends mail.",
    )
    handoff_url: str | None = Field(
        default=None,
        description="Replaces the handoff destinations of leadflow.yaml (file://DIR or an https webhook).",
    )
    webhook_secret: SecretStr | None = Field(default=None, description="Standard Webhooks secret (whsec_...).")
    secret_key: SecretStr | None = Field(default=None, description="Signs unsubscribe and tracking tokens.")
    public_base_url: str = Field(
        default="http://localhost:8000",
        description="Base URL of the public web endpoint, used for links in emails.",
    )
    inbound_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks secret (whsec_...) that inbound events to POST /events must be signed with.",
    )
    track_opens: bool = Field(default=False, description="Add an open-tracking pixel to the HTML part of emails.")

    def resolve(self, path: Path) -> Path:
        """A path from the settings, made absolute against the workspace."""
        return path if path.is_absolute() else (self.workspace / path).resolve()

    @property
    def config_file(self) -> Path:
        return self.resolve(self.config_path)

    @property
    def resolved_database_url(self) -> str:
        """The database URL with a relative SQLite file placed in the workspace."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            raw = self.database_url[len(prefix) :]
            if raw and raw != ":memory:" and not Path(raw).is_absolute():
                return prefix + str(self.resolve(Path(raw)))
        return self.database_url


def load_settings(workspace: Path | None = None) -> Settings:
    """Settings for a workspace (argument, else LEADFLOW_WORKSPACE, else the current folder).

    The workspace's `.env` file is read first; the process environment overrides it.
    """
    folder = (workspace or Path(os.environ.get("LEADFLOW_WORKSPACE", "."))).resolve()
    env_file = folder / ".env"
    settings = Settings(_env_file=env_file if env_file.exists() else None)
    settings.workspace = folder
    return settings
