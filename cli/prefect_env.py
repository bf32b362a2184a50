"""Prefect settings leadflow sets when the user has not: each with its reason, in one place.

- Heartbeats: every flow run tells the server it is alive every 30 s (Prefect's minimum), so the
  `leadflow: runs that stopped heartbeating` automation (flows/automations.yaml) can mark a run whose
  process died (kill -9, a lost machine) Crashed; without them such a run stays Running forever.
- The temporary server (`leadflow run` without PREFECT_API_URL) gets 120 s to start instead of
  Prefect's 20: on a busy machine 20 s is not enough, and the quick start failed.
- No analytics: most installs here have no internet.

A value already in the environment always wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

HEARTBEAT_SECONDS = 30  # Prefect 3.8.8 sends a heartbeat at most every 30 s, whatever is asked
EPHEMERAL_STARTUP_SECONDS = 120

DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EPHEMERAL_STARTUP_SECONDS),
}
# What a flow run started by a worker or `leadflow serve` needs in its environment (deployments' job variables).
RUN_ENV: dict[str, str] = {
    name: DEFAULTS[name] for name in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
}

EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each default the user has not set (call before Prefect reads its settings)."""
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)


def ephemeral_timeout_hint(exc: BaseException, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """What to do when the temporary Prefect server did not start in time; None for any other error."""
    if EPHEMERAL_TIMEOUT not in str(exc):
        return None
    budget = environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_SECONDS))
    return (
        f"the temporary Prefect server did not start within {budget} s (a busy machine?).\n"
        "Either run a Prefect server and point leadflow at it:\n"
        "  prefect server start            # in another shell\n"
        "  export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
        "or give the temporary server longer:\n"
        "  export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300"
    )
