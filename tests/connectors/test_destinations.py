"""From a destination in leadflow.yaml to its sink: where secrets come from, and what a missing one says."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.connectors.crm_handoff.common import MemoryLedger
from leadflow.connectors.crm_handoff.hubspot import HubSpotSink
from leadflow.connectors.crm_handoff.salesforce import SalesforceSink
from leadflow.connectors.destinations import open_sink
from leadflow.connectors.errors import CredentialsRefused
from leadflow.connectors.handoff import FileInbox, WebhookSink
from leadflow.leads.config.handoff import (
    FileDestination,
    HubSpotDestination,
    SalesforceDestination,
    WebhookDestination,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def lookup(values: dict[str, str]):  # type: ignore[no-untyped-def]
    asked: list[tuple[str | None, str | None]] = []

    def secret(env: str | None, block: str | None) -> str | None:
        asked.append((env, block))
        return values.get(block or env or "")

    secret.asked = asked  # type: ignore[attr-defined]
    return secret


def test_files_and_webhooks(tmp_path: Path) -> None:
    inbox = open_sink(FileDestination(kind="file", path="sales"), base_dir=tmp_path, secret=lookup({}),
                      ledger=MemoryLedger())  # fmt: skip
    assert isinstance(inbox, FileInbox) and inbox.directory == tmp_path / "sales"

    hook = WebhookDestination(
        name="hook", kind="webhook", url="https://hooks.acme.example/in", secret_env="HOOK_SECRET"
    )
    sink = open_sink(hook, base_dir=tmp_path, secret=lookup({"HOOK_SECRET": SECRET}), ledger=MemoryLedger())
    assert isinstance(sink, WebhookSink) and not sink.allow_private
    shared = WebhookDestination(name="hook", kind="webhook", url="https://h.example/", allow_private_addresses=True)
    sink = open_sink(shared, base_dir=tmp_path, secret=lookup({}), ledger=MemoryLedger(), webhook_secret=SECRET)
    assert isinstance(sink, WebhookSink) and sink.allow_private
    with pytest.raises(ValueError, match="destination 'hook': LEADFLOW_WEBHOOK_SECRET is required"):
        open_sink(shared, base_dir=tmp_path, secret=lookup({}), ledger=MemoryLedger())


def test_crm_tokens_come_from_a_block_or_the_environment_and_a_missing_one_names_where_it_was_looked_for(
    tmp_path: Path,
) -> None:
    by_block = HubSpotDestination(name="hubspot", kind="hubspot", token_block="hubspot-token")
    secret = lookup({"hubspot-token": "pat-from-block"})
    with open_sink(by_block, base_dir=tmp_path, secret=secret, ledger=MemoryLedger()) as sink:
        assert isinstance(sink, HubSpotSink)
    assert secret.asked == [("HUBSPOT_TOKEN", "hubspot-token")]  # type: ignore[attr-defined]

    with pytest.raises(CredentialsRefused) as caught:
        open_sink(HubSpotDestination(name="hs", kind="hubspot"), base_dir=tmp_path, secret=lookup({}),
                  ledger=MemoryLedger())  # fmt: skip
    assert "destination 'hs'" in str(caught.value) and "HUBSPOT_TOKEN" in str(caught.value)

    sf = SalesforceDestination(name="sf", kind="salesforce", base_url="https://acme.my.salesforce.com",
                               client_id_env="SF_ID", client_secret_env="SF_SECRET")  # fmt: skip
    with pytest.raises(CredentialsRefused, match="set SF_ID and SF_SECRET"):
        open_sink(sf, base_dir=tmp_path, secret=lookup({"SF_ID": "id"}), ledger=MemoryLedger())
    secret = lookup({"SF_ID": "id", "SF_SECRET": "sf-very-secret"})
    with open_sink(sf, base_dir=tmp_path, secret=secret, ledger=MemoryLedger()) as sink:
        assert isinstance(sink, SalesforceSink)
        assert "sf-very-secret" not in repr(sink) + repr(sink.client._client.auth)
