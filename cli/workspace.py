"""Which workspace a command works on, opened once per command, and refusing to work where there is none.

A command run in the wrong folder must not create an empty `leadflow.db` there and report zeros
as if that were the funnel: every command that reads or writes a workspace asks here first.
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.markup import escape

from leadflow.cli.app import errors, fail
from leadflow.leads.config.settings import Settings, load_settings
from leadflow.leads.config.workspace import ConfigError, WorkspaceConfig, load_config
from leadflow.leads.workspace import Workspace, open_workspace


def not_a_workspace(settings: Settings) -> str | None:
    """Why the settings' folder is not a workspace (its config file is missing), or None if it is one."""
    if settings.config_file.is_file():
        return None
    return (
        f"{settings.workspace} is not a leadflow workspace: {settings.config_file} does not exist. "
        "Run the command in a workspace folder, point to one with --workspace DIR (or LEADFLOW_WORKSPACE=DIR), "
        "or create one here with `leadflow init`."
    )


def workspace_settings(workspace: Path | None) -> Settings:
    """The workspace's settings (--workspace, else LEADFLOW_WORKSPACE, else here); exits with code 2 if none."""
    try:
        settings = load_settings(workspace)
    except ValidationError as exc:  # a malformed LEADFLOW_* value; the value itself may be a secret, so never shown
        first = exc.errors()[0]
        name = "LEADFLOW_" + str(first["loc"][0]).upper() if first["loc"] else "a LEADFLOW_ setting"
        errors.print(f"[bold red]error:[/] {name} (environment or .env): {escape(first['msg'])}", highlight=False)
        raise typer.Exit(code=2) from None
    why = not_a_workspace(settings)
    if why:
        errors.print(f"[bold red]error:[/] {escape(why)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    return settings


def workspace_config(settings: Settings) -> WorkspaceConfig:
    """The validated config, for the commands that need no database (`check`, `preview`); exits 2 naming
    the file, line and key of a mistake."""
    try:
        return load_config(settings.config_file)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def opened_workspace(workspace: Path | None, *, settings: Settings | None = None) -> Workspace:
    """The workspace a command works on, opened once: settings (or the ones the command checked first), the
    validated config (a mistake exits 2 naming file, line and key, before the database is touched), the
    database migrated. Use it in `with`: leaving closes the database."""
    settings = settings or workspace_settings(workspace)
    try:
        return open_workspace(settings=settings)
    except ConfigError as exc:
        raise fail(str(exc)) from None
