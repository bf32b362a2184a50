"""What flows hand to connectors, for sources and handoff destinations alike: credentials and vendor rate limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prefect import get_run_logger

from leadflow.flows.workspace import Workspace
from leadflow.leads.config.workspace import FileSource


class RateLimited(Protocol):
    """A CRM source or destination: its vendor, and the Prefect limit it names (if any)."""

    @property
    def kind(self) -> str: ...

    @property
    def rate_limit(self) -> str | None: ...


def workspace_secret(ws: Workspace, env_name: str | None, block_name: str | None) -> str | None:
    """A credential from a Prefect Secret block, the environment, or the workspace's .env file (in that order)."""
    if block_name:
        from prefect.blocks.system import Secret

        secret = Secret.load(block_name)  # called from sync code: the block itself, not a coroutine
        if not isinstance(secret, Secret):
            raise TypeError(f"Secret block {block_name!r} did not load")
        return str(secret.get())
    return ws.secrets.get(env_name) if env_name else None


def vendor_rate_limit(spec: FileSource | RateLimited) -> Callable[[], None] | None:
    """A callable that takes one slot of the vendor's Prefect rate limit; None for files or a missing limit.

    Like Prefect's own `strict=False`, a limit that was never created is not an error: the run
    goes unthrottled, with one warning that says how to create it.
    """
    if isinstance(spec, FileSource):
        return None
    name = spec.rate_limit or f"leadflow-{spec.kind}"
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        get_run_logger().warning(
            "No Prefect concurrency limit %r: %s calls are not rate limited across workers "
            "(create one: prefect gcl create %s --limit 10 --slot-decay-per-second 10)",
            name,
            spec.kind,
            name,
        )
        return None

    def acquire() -> None:
        rate_limit(name, occupy=1, strict=False)

    return acquire
