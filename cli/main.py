"""The `leadflow` command: set up a workspace, run flows, check config, see where leads stand.

Each command opens the workspace once (`cli/workspace.py`) and hands it down. The commands live in
modules by what they are for; importing them here registers them on the app.
"""

from __future__ import annotations

from importlib import import_module

from leadflow.cli.app import app
from leadflow.cli.handoff import handoff_app
from leadflow.cli.ops import ops_app

for _module in ("run", "review", "admin"):  # in this order `leadflow --help` lists their commands
    import_module(f"leadflow.cli.{_module}")
app.add_typer(handoff_app, name="handoff")
app.add_typer(ops_app, name="ops")

__all__ = ["app"]

if __name__ == "__main__":
    app()
