"""Notification URLs carry tokens (in the path, the query, the password, or the host for slack://):
neither our errors nor apprise's own log lines may show them."""

from __future__ import annotations

import logging

import pytest

from leadflow.connectors.errors import NotifyError
from leadflow.connectors.notify import AppriseNotifier, describe
from tests.peers import free_port

TOKEN = "Zq7TOKENxY"


@pytest.mark.parametrize(
    "url",
    [
        f"json://127.0.0.1:{{port}}/hooks/{TOKEN}?token={TOKEN}",
        f"jsons://ops:{TOKEN}@127.0.0.1:{{port}}/notify",
        f"slack://{TOKEN}/B{TOKEN}/C{TOKEN}",
    ],
)
def test_a_failed_notification_names_no_token_in_its_error_or_in_apprises_log(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = url.replace("{port}", str(free_port()))  # nothing listens there: the send fails
    caplog.set_level(logging.DEBUG, logger="apprise")
    with pytest.raises(NotifyError) as failed:
        AppriseNotifier().send(url=url, title="New SQL", body="Ann at Acme")

    assert TOKEN not in str(failed.value)
    assert caplog.records, "apprise said nothing: the test would not see a leak"
    assert not [r.getMessage() for r in caplog.records if TOKEN in r.getMessage()]


def test_describe_keeps_a_server_name_but_never_a_token_host() -> None:
    assert describe("json://hooks.example:8080/x/secret") == "json://hooks.example"
    assert describe(f"slack://{TOKEN}/B/C") == "slack://…"
