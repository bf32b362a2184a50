"""From a handoff destination in `leadflow.yaml` to the sink that delivers to it.

Secrets are asked for through `secret(env_name, block_name)`, which the caller provides (the flow
reads Prefect Secret blocks, the environment and the workspace's .env file); a missing one is an
error naming the destination and where it was looked for, never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from connectors.crm_handoff.common import CredentialsRefused, DeliveryLedger
from connectors.crm_handoff.hubspot import HubSpotSink
from connectors.crm_handoff.pipedrive import PipedriveSink
from connectors.crm_handoff.salesforce import SalesforceSink
from connectors.handoff import MISSING_SECRET_MESSAGE, FileInbox, WebhookSink
from connectors.http import RetryPolicy
from leads.handoff_config import (
    CrmDestination,
    FileDestination,
    HandoffDestination,
    HubSpotDestination,
    PipedriveDestination,
    SalesforceDestination,
    WebhookDestination,
)

SecretLookup = Callable[[str | None, str | None], str | None]
Sink = FileInbox | WebhookSink | HubSpotSink | SalesforceSink | PipedriveSink


def open_sink(
    spec: HandoffDestination,
    *,
    base_dir: Path,
    secret: SecretLookup,
    ledger: DeliveryLedger,
    webhook_secret: str | None = None,
    allow_private: bool = False,
    acquire: Callable[[], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> Sink:
    """The sink for one destination; every sink is a context manager (close it when done)."""
    if isinstance(spec, FileDestination):
        path = Path(spec.path)
        return FileInbox(path if path.is_absolute() else Path(base_dir) / path)
    if isinstance(spec, WebhookDestination):
        signing = secret(spec.secret_env, spec.secret_block) if (spec.secret_env or spec.secret_block) else None
        signing = signing or webhook_secret
        if not signing:
            raise ValueError(f"destination {spec.name!r}: {MISSING_SECRET_MESSAGE}")
        private = allow_private if spec.allow_private_addresses is None else spec.allow_private_addresses
        return WebhookSink(spec.url, signing, allow_private=private)
    common = dict(ledger=ledger, acquire=acquire, transport=transport, retry=retry)
    if isinstance(spec, HubSpotDestination):
        return HubSpotSink(spec, token=_required(spec, secret), **common)  # type: ignore[arg-type]
    if isinstance(spec, PipedriveDestination):
        return PipedriveSink(spec, token=_required(spec, secret), **common)  # type: ignore[arg-type]
    if isinstance(spec, SalesforceDestination):
        if spec.client_id_env or spec.client_secret_env:
            client_id, client_secret = secret(spec.client_id_env, None), secret(spec.client_secret_env, None)
            if not client_id or not client_secret:
                raise CredentialsRefused(
                    spec.name,
                    f"no client credentials: set {spec.client_id_env} and {spec.client_secret_env} "
                    "in the environment or the workspace's .env file",
                )
            return SalesforceSink(spec, client_id=client_id, client_secret=client_secret, **common)  # type: ignore[arg-type]
        return SalesforceSink(spec, token=_required(spec, secret), **common)  # type: ignore[arg-type]
    raise TypeError(f"unknown destination kind {type(spec).__name__}")


def _required(spec: CrmDestination, secret: SecretLookup) -> str:
    value = secret(spec.token_env, spec.token_block)
    if value:
        return value
    where = f"the Prefect Secret block {spec.token_block!r}" if spec.token_block else None
    if where is None and spec.token_env:
        where = f"{spec.token_env} (environment or the workspace's .env file)"
    raise CredentialsRefused(spec.name, f"no API token: looked in {where or 'nothing (set token_env)'}")
