"""What the terminal shows: leadflow's own summary by default, Prefect's full log with --verbose.

By default Prefect's console handler shows warnings from leadflow's code only, without tracebacks:
the run lifecycle ("Beginning flow run", "Finished in state Failed" and the traceback under it)
repeats what the CLI says in one line. The log the Prefect server keeps (the UI, workers) is left
at INFO, with the counts each flow logs and every traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    """Remember --verbose (tracebacks for unexpected errors) and set Prefect's defaults before it is imported."""
    from leadflow.cli.prefect_env import apply_defaults

    _state["verbose"] = _state["verbose"] or verbose or os.environ.get("LEADFLOW_VERBOSE", "") not in ("", "0")
    apply_defaults()  # heartbeats, a longer start budget for the temporary server, no analytics


def verbose() -> bool:
    return _state["verbose"]


class _OwnWarnings(logging.Filter):
    """Warnings and errors from leadflow's code; Prefect's own INFO and run lifecycle stay in the server's log."""

    def __init__(self, prefect_dir: str) -> None:
        super().__init__()
        self.prefect_dir = prefect_dir

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        return not record.pathname.startswith(self.prefect_dir)


class _NoTraceback(logging.Formatter):
    """The wrapped formatter's line without the traceback or stack under it."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_prefect_console() -> None:
    """Call once Prefect is imported (it sets up its logging on import); does nothing with --verbose."""
    if verbose():
        return
    import prefect
    from prefect.logging.handlers import PrefectConsoleHandler

    prefect_dir = str(Path(prefect.__file__).parent)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _OwnWarnings) for f in handler.filters
            ):
                handler.addFilter(_OwnWarnings(prefect_dir))
                handler.setFormatter(_NoTraceback(handler.formatter))


def one_line(exc: BaseException) -> str:
    """An unexpected error as one line: its kind and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
