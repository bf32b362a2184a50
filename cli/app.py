"""The `leadflow` Typer app, its shared options, and how a command fails: the pieces every command module uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from leadflow.cli.output import one_line, set_verbose, verbose

console = Console()
errors = Console(stderr=True)

WorkspaceOption = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder (default: current).")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's run logs and full tracebacks.")]


class _App(typer.Typer):
    """The `leadflow` command: an unexpected error is one line naming its cause; --verbose shows the traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if verbose():
                raise
            errors.print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            errors.print("Rerun with --verbose (or LEADFLOW_VERBOSE=1) for the traceback.", highlight=False)
            sys.exit(1)


app = _App(
    help="leadflow: lead scoring, nurture and sales handoff on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold secrets
)


@app.callback()
def _options(verbose: VerboseOption = False) -> None:
    """leadflow: lead scoring, nurture and sales handoff on Prefect."""
    set_verbose(verbose)


def fail(message: str) -> typer.Exit:
    """Say what is wrong (one line, on the terminal) and give the exit for a usage or config error (2)."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)
