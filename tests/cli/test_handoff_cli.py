"""`leadflow check` on the handoff section: notification URLs that could not be sent to are named, tokens never."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.cli.main import app

runner = CliRunner()


def test_check_names_unusable_notification_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "activity.jsonl").write_text("")  # the source leadflow.yaml names
    config = tmp_path / "leadflow.yaml"
    text = config.read_text()
    text = text.replace(
        "{id: sanne, name: Sanne Visser, email: sanne@northwind.example}",
        '{id: sanne, name: Sanne Visser, notify: "slack://${SLACK_TOKEN}/#sales"}',
    )
    text = text.replace(
        "{id: jack, name: Jack Turner, email: jack@northwind.example}",
        '{id: jack, name: Jack Turner, notify: "smoke-signal://hill.example/secret-path"}',
    )
    config.write_text(text)
    result = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert result.exit_code == 1
    assert "handoff.owners[sanne].notify: the notification URL needs ${SLACK_TOKEN}, which is not set" in result.output
    assert "handoff.owners[jack].notify: smoke-signal://… is not a notification URL" in result.output
    assert "hill.example" not in result.output  # an unknown scheme's host may be a token
    assert "secret-path" not in result.output

    (tmp_path / ".env").write_text(
        (tmp_path / ".env").read_text() + "SLACK_TOKEN=T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ\n"
    )
    config.write_text(text.replace("smoke-signal://hill.example/secret-path", "json://hooks.northwind.example/sales"))
    ok = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert ok.exit_code == 0 and "valid" in ok.output, ok.output
