"""From a source in `leadflow.yaml` to the object that reads it: a file source or a CRM connector.

Secrets are asked for through `secret(env_name, block_name)`, which the caller provides (the flow
reads environment variables, the workspace's .env file and Prefect Secret blocks); a missing
one is an error naming the source and where the secret was looked for, never its value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import AuthenticationError
from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.hubspot import hubspot_source
from leadflow.connectors.pipedrive import pipedrive_source
from leadflow.connectors.salesforce import salesforce_source
from leadflow.connectors.secrets import SecretLookup, client_credentials, required_token
from leadflow.connectors.sync import ActivitySource
from leadflow.leads.config.sources import HubSpotSource, PipedriveSource, SalesforceSource, VendorSource
from leadflow.leads.config.workspace import FileSource, SourceConfig
from leadflow.leads.ingest.records import PlusAddressing


def open_source(
    spec: SourceConfig,
    *,
    base_dir: Path,
    secret: SecretLookup,
    acquire: Callable[[], None] | None = None,
    batch_size: int = 5000,
    plus_addressing: PlusAddressing = "keep",
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> ActivitySource:
    """The reader for one configured source; vendor sources hold an HTTP client (call `close()`)."""
    if isinstance(spec, FileSource):
        path = Path(spec.path)
        path = path if path.is_absolute() else (base_dir / path).resolve()
        return FileActivitySource(spec.name, path, batch_size=batch_size, plus_addressing=plus_addressing)
    common: dict[str, Any] = dict(acquire=acquire, transport=transport, retry=retry, plus_addressing=plus_addressing)
    if isinstance(spec, HubSpotSource):
        return hubspot_source(spec, token=_required(spec, secret), **common)
    if isinstance(spec, PipedriveSource):
        return pipedrive_source(spec, token=_required(spec, secret), **common)
    if isinstance(spec, SalesforceSource):
        credentials = client_credentials(spec, secret, AuthenticationError)
        if credentials:
            client_id, client_secret = credentials
            return salesforce_source(spec, client_id=client_id, client_secret=client_secret, **common)
        return salesforce_source(spec, token=_required(spec, secret), **common)
    raise TypeError(f"unknown source kind {type(spec).__name__}")


def _required(spec: VendorSource, secret: SecretLookup) -> str:
    return required_token(spec, secret, AuthenticationError)
