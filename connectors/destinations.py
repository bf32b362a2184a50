"""From a handoff destination in `leadflow.yaml` to the sink that delivers to it.

Secrets are asked for through `secret(env_name, block_name)`, which the caller provides (the flow
reads Prefect Secret blocks, the environment and the workspace's .env file); a missing one is an
error naming the destination and where it was looked for, never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.crm_handoff.common import DeliveryLedger
from leadflow.connectors.crm_handoff.hubspot import HubSpotSink
from leadflow.connectors.crm_handoff.pipedrive import PipedriveSink
from leadflow.connectors.crm_handoff.salesforce import SalesforceSink
from leadflow.connectors.errors import CredentialsRefused
from leadflow.connectors.handoff import MISSING_SECRET_MESSAGE, FileInbox, WebhookSink
from leadflow.connectors.secrets import SecretLookup, client_credentials, required_token
from leadflow.leads.config.handoff import (
    CrmDestination,
    FileDestination,
    HandoffDestination,
    HubSpotDestination,
    PipedriveDestination,
    SalesforceDestination,
    WebhookDestination,
)

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
        return WebhookSink(spec.url, signing, allow_private=private, timeout=spec.timeout_seconds)
    if isinstance(spec, HubSpotDestination):
        token = _required(spec, secret)
        return HubSpotSink(spec, token=token, ledger=ledger, acquire=acquire, transport=transport, retry=retry)
    if isinstance(spec, PipedriveDestination):
        token = _required(spec, secret)
        return PipedriveSink(spec, token=token, ledger=ledger, acquire=acquire, transport=transport, retry=retry)
    if isinstance(spec, SalesforceDestination):
        credentials = client_credentials(spec, secret, CredentialsRefused)
        client_id, client_secret = credentials if credentials else (None, None)
        return SalesforceSink(
            spec,
            token=None if credentials else _required(spec, secret),
            client_id=client_id,
            client_secret=client_secret,
            ledger=ledger,
            acquire=acquire,
            transport=transport,
            retry=retry,
        )
    raise TypeError(f"unknown destination kind {type(spec).__name__}")


def _required(spec: CrmDestination, secret: SecretLookup) -> str:
    return required_token(spec, secret, CredentialsRefused)
