"""The pipeline against real peers: an SMTP server and a signed-webhook receiver on loopback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow.flows.handoff import handoff_flow
from leadflow.flows.params import HandoffParams
from leadflow.leads.config.workspace import ConfigError
from tests.flows.test_pipeline import END, make_workspace, run
from tests.peers import SECRET

pytestmark = pytest.mark.usefixtures("prefect_harness")


def webhook_workspace(folder: Path, database_url: str, url: str, extra_env: str = "") -> Path:
    """A demo workspace handing off to the loopback receiver (so private addresses are allowed)."""
    folder = make_workspace(
        folder,
        database_url,
        leads=200,
        extra_env=f"LEADFLOW_HANDOFF_URL={url}\nLEADFLOW_WEBHOOK_SECRET={SECRET}\n{extra_env}",
    )
    config = folder / "leadflow.yaml"
    config.write_text(
        config.read_text().replace(
            "destination: file://handoff-inbox", "destination: file://handoff-inbox\n  allow_private_addresses: true"
        )
    )
    return folder


def test_emails_go_through_smtp_and_sqls_through_a_signed_webhook(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int], webhook_receiver: tuple[Any, str]
) -> None:
    smtp, port = smtp_server
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url, f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n")
    first = run(folder)

    assert first.nurture.sent == len(smtp.messages) > 0
    assert smtp.connections == 1  # one connection reused for the whole batch
    assert {m.message["List-Unsubscribe-Post"] for m in smtp.messages} == {"List-Unsubscribe=One-Click"}
    assert first.handoff.delivered == len(hook.requests) > 0
    assert all(isinstance(r.verified, dict) and r.verified["event"] == "lead.sql" for r in hook.requests)
    ids = [r.headers["webhook-id"] for r in hook.requests]
    assert len(set(ids)) == len(ids)

    second = run(folder)
    assert second.nurture.sent == 0 and second.handoff.delivered == 0
    assert len(smtp.messages) == first.nurture.sent and len(hook.requests) == first.handoff.delivered
    assert not (folder / "outbox").exists() and not (folder / "handoff-inbox").exists()


def test_a_failing_webhook_is_retried_later_not_lost(
    tmp_path: Path, sqlite_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    folder = webhook_workspace(tmp_path / "ws", sqlite_url, url)
    hook.script.extend([(503, {})] * 1000)
    first = run(folder)
    assert first.handoff.delivered == 0 and first.handoff.retried == first.handoff.queued > 0

    hook.script.clear()
    later = handoff_flow(HandoffParams(workspace=str(folder), as_of=END + timedelta(hours=2)))
    assert later.delivered == first.handoff.queued and later.queued == 0
    delivered_ids = [r.headers["webhook-id"] for r in hook.requests if r.verified and isinstance(r.verified, dict)]
    assert len(set(delivered_ids)) == first.handoff.queued


def test_an_invalid_config_stops_the_run_before_touching_data(tmp_path: Path, sqlite_url: str) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=20)
    config = folder / "leadflow.yaml"
    config.write_text(config.read_text().replace("    min_score: 120\n", "    min_score: lots\n"))
    with pytest.raises(ConfigError) as caught:
        run(folder)
    assert "stages.sql.min_score" in str(caught.value) and "leadflow.yaml" in str(caught.value)
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
