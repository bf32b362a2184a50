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

from connectors.files import FileActivitySource
from connectors.http import AuthenticationError, RetryPolicy
from connectors.hubspot import hubspot_source
from connectors.pipedrive import pipedrive_source
from connectors.salesforce import salesforce_source
from connectors.sync import ActivitySource
from leads.config import FileSource, SourceConfig
from leads.records import PlusAddressing
from leads.source_config import HubSpotSource, PipedriveSource, SalesforceSource, VendorSource

SecretLookup = Callable[[str | None, str | None], str | None]


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
        if spec.client_id_env or spec.client_secret_env:
            client_id = secret(spec.client_id_env, None)
            client_secret = secret(spec.client_secret_env, None)
            if not client_id or not client_secret:
                raise AuthenticationError(
                    spec.name,
                    f"no client credentials: set {spec.client_id_env} and {spec.client_secret_env} "
                    "in the environment or the workspace's .env file",
                )
            return salesforce_source(spec, client_id=client_id, client_secret=client_secret, **common)
        return salesforce_source(spec, token=_required(spec, secret), **common)
    raise TypeError(f"unknown source kind {type(spec).__name__}")


def _required(spec: VendorSource, secret: SecretLookup) -> str:
    value = secret(spec.token_env, spec.token_block)
    if value:
        return value
    where = f"the Prefect Secret block {spec.token_block!r}" if spec.token_block else None
    if where is None and spec.token_env:
        where = f"{spec.token_env} (environment or the workspace's .env file)"
    raise AuthenticationError(spec.name, f"no API token: looked in {where or 'nothing (set token_env)'}")
