"""Process settings from the environment (prefix LEADFLOW_) or a `.env` file in the workspace.

Settings say *where* things are (database, mail server, handoff peer) and hold the secrets;
the workspace config (`leadflow.yaml`) says *what* the business wants. Secrets are SecretStr so
they never print. This module is the one reader of the workspace's `.env`: the connector tokens
and notification URL variables it holds are asked of `Settings.secrets`, never read again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "LEADFLOW_"


class Secrets(Mapping[str, str]):
    """Variables a connector or a notification URL names (`token_env`, `${NAME}`): the process
    environment, else the workspace's `.env`. A name set to an empty value counts as unset.

    The environment is read at each lookup, so a variable set after the workspace was opened counts.
    """

    def __init__(self, env_file: Mapping[str, str] | None = None) -> None:
        self._env_file = dict(env_file or {})

    def __getitem__(self, name: str) -> str:
        value = os.environ.get(name) or self._env_file.get(name)
        if not value:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        names = {name for name, value in self._env_file.items() if value}
        names.update(name for name, value in os.environ.items() if value)
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:  # never the values
        return f"Secrets({len(self)} names)"


class Settings(BaseSettings):
    """Where leadflow reads and writes. Relative paths resolve against `workspace`."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

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
    _secrets: Secrets = PrivateAttr(default_factory=Secrets)

    @property
    def secrets(self) -> Secrets:
        """Connector and notification variables: the environment, else the workspace's `.env`."""
        return self._secrets

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


def read_env_file(folder: Path) -> dict[str, str]:
    """The workspace's `.env` (name to value; a name without a value is left out); empty if there is none."""
    env_file = folder / ".env"
    if not env_file.is_file():
        return {}
    return {name: value for name, value in dotenv_values(env_file).items() if value is not None}


def load_settings(workspace: Path | None = None) -> Settings:
    """Settings for a workspace (argument, else LEADFLOW_WORKSPACE, else the current folder).

    The workspace's `.env` file is read once, here; the process environment overrides it.
    """
    folder = (workspace or Path(os.environ.get("LEADFLOW_WORKSPACE", "."))).resolve()
    env_file = read_env_file(folder)
    in_environment = {name.upper() for name in os.environ}
    from_file = {
        name[len(PREFIX) :].lower(): value
        for name, value in env_file.items()
        if name.upper().startswith(PREFIX) and name.upper() not in in_environment
    }
    values: dict[str, Any] = {name: value for name, value in from_file.items() if name in Settings.model_fields}
    settings = Settings(**values)
    settings.workspace = folder
    settings._secrets = Secrets(env_file)
    return settings
