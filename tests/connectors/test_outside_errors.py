"""One error tree, one reading of HTTP statuses, one backoff: what every protocol shares."""

from __future__ import annotations

import inspect
import random
from typing import Any

import httpx
import pytest

import leadflow.connectors.errors as errors
from leadflow.connectors.backoff import OUTBOX_BACKOFF, Backoff, RetryPolicy
from leadflow.connectors.errors import Fatal, Retriable, RetriableAPIError, RetriableHandoffError
from leadflow.connectors.handoff import WebhookSink
from leadflow.connectors.http import ApiClient
from leadflow.connectors.status import Reading, read_status
from tests.connectors.handoff_payloads import payload
from tests.peers import SECRET, ServerState


@pytest.mark.parametrize(
    ("status", "reading"),
    [
        (200, Reading.ok),
        (204, Reading.ok),
        (300, Reading.redirect),
        (302, Reading.redirect),
        (400, Reading.refused),
        (401, Reading.auth),
        (403, Reading.refused),
        (404, Reading.refused),
        (408, Reading.retry),
        (410, Reading.gone),
        (422, Reading.refused),
        (425, Reading.retry),  # RFC 8470 Too Early: the same request after the handshake succeeds
        (429, Reading.retry),
        (500, Reading.retry),
        (503, Reading.retry),
        (599, Reading.retry),
        (600, Reading.refused),
    ],
)
def test_one_reading_of_every_status(status: int, reading: Reading) -> None:
    assert read_status(status) is reading


def test_a_425_is_retried_by_vendor_sources_and_by_webhooks(webhook_receiver: tuple[ServerState, str]) -> None:
    answers = [httpx.Response(425), httpx.Response(200, json={"ok": True})]
    waits: list[float] = []
    with ApiClient(
        source="crm",
        base_url="https://api.vendor.example",
        retry=RetryPolicy(sleep=waits.append, jitter=0.0),
        transport=httpx.MockTransport(lambda request: answers.pop(0)),
    ) as api:
        assert api.request_json("GET", "/things") == {"ok": True}
    assert waits == [1.0]

    state, url = webhook_receiver
    state.script.append((425, {}))
    with WebhookSink(url, SECRET, allow_private=True) as sink, pytest.raises(RetriableHandoffError) as early:
        sink.deliver(idempotency_key="k", payload=payload())
    assert early.value.status == 425


def test_every_error_raised_is_retriable_or_fatal_and_one_except_catches_each_kind() -> None:
    leaves = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.OutsideError) and cls.__module__ == errors.__name__
    ]
    families = {errors.OutsideError, Retriable, Fatal, errors.APIError, errors.HandoffError}
    families |= {errors.MailError, errors.NotifyError, errors.DestinationStopped}
    for cls in set(leaves) - families:
        assert issubclass(cls, Retriable) != issubclass(cls, Fatal), cls

    def caught(error: Exception) -> str:
        try:
            raise error
        except Retriable as exc:
            return f"retry after {exc.retry_after}"
        except Fatal:
            return "fatal"

    assert caught(RetriableAPIError("crm", "rate limited", status=429, retry_after=7)) == "retry after 7"
    assert caught(RetriableHandoffError("webhook answered 503", retry_after=2)) == "retry after 2"
    assert caught(errors.TransientMailError("SMTP deferred")) == "retry after None"
    assert caught(errors.RetriableNotifyError("failed")) == "retry after None"
    assert caught(errors.PermanentMailError("refused", recipient="a@b.example")) == "fatal"
    assert caught(errors.AuthenticationError("crm", "token expired")) == "fatal"


def _waits(policy: Backoff, attempts: range, **kwargs: Any) -> list[float | None]:
    return [policy.delay(n, **kwargs) for n in attempts]


def test_the_outbox_backoff_doubles_from_30_seconds_to_an_hour_with_20_percent_jitter() -> None:
    random.seed(7)
    for attempt, base in [(1, 30), (2, 60), (3, 120), (8, 3600), (30, 3600)]:
        for _ in range(50):
            assert base * 0.8 <= OUTBOX_BACKOFF.wait(attempt) <= base * 1.2
    assert OUTBOX_BACKOFF.wait(1, retry_after=600) == 600  # a Retry-After is a floor under the spacing
    assert 24 <= OUTBOX_BACKOFF.wait(1, retry_after=5) <= 36
    assert OUTBOX_BACKOFF.delay(10_000) is not None  # the dead-letter horizon decides, not the policy


def test_in_a_run_the_retry_after_is_the_wait_and_the_attempts_end_it() -> None:
    policy = RetryPolicy(attempts=4, jitter=0.0)
    assert _waits(policy, range(1, 6)) == [1.0, 2.0, 4.0, None, None]
    assert policy.delay(3, retry_after=0.5) == 0.5  # as the peer asked, not the 4 s of the spacing
    assert policy.delay(1, retry_after=301) is None  # a daily quota is not waited out in a run
    assert 7 <= RetryPolicy().delay(1, retry_after=7) <= 7.7  # a little later, so workers do not return in step
