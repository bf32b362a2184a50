"""Asking for a connector's secrets, the same way for sources and handoff destinations.

The caller provides `secret(env_name, block_name)` (the flow reads a Prefect Secret block, else the
workspace's secrets: the environment, then its .env file, read once with the settings). A missing
secret is raised as the caller's own error (`refused(name, message)`), naming where it was looked for,
never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SecretLookup = Callable[[str | None, str | None], str | None]
Refused = Callable[[str, str], Exception]


def required_token(spec: Any, secret: SecretLookup, refused: Refused) -> str:
    """The API token from `token_env`/`token_block`; `refused` when it is not set."""
    value = secret(spec.token_env, spec.token_block)
    if value:
        return value
    where = f"the Prefect Secret block {spec.token_block!r}" if spec.token_block else None
    if where is None and spec.token_env:
        where = f"{spec.token_env} (environment or the workspace's .env file)"
    raise refused(spec.name, f"no API token: looked in {where or 'nothing (set token_env)'}")


def client_credentials(spec: Any, secret: SecretLookup, refused: Refused) -> tuple[str, str] | None:
    """A connected app's (client id, client secret) when the spec names them, else None (use a token)."""
    if not (spec.client_id_env or spec.client_secret_env):
        return None
    client_id, client_secret = secret(spec.client_id_env, None), secret(spec.client_secret_env, None)
    if not client_id or not client_secret:
        raise refused(
            spec.name,
            f"no client credentials: set {spec.client_id_env} and {spec.client_secret_env} "
            "in the environment or the workspace's .env file",
        )
    return client_id, client_secret
