"""Which workspace a command works on, and refusing to work where there is none.

A command run in the wrong folder must not create an empty `leadflow.db` there and report zeros
as if that were the funnel: every command that reads or writes a workspace asks here first.
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from leadflow.leads.config.settings import Settings, load_settings

errors = Console(stderr=True)


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
