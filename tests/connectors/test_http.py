"""The shared HTTP plumbing, at the transport boundary (httpx.MockTransport): retries, Retry-After, typed errors."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import AuthenticationError, FatalAPIError, RetriableAPIError
from leadflow.connectors.http import ApiClient, HeaderToken

SECRET = "s3cr3t-token"


def client(handler: Callable[[httpx.Request], httpx.Response], waits: list[float], **kwargs: object) -> ApiClient:
    retry = RetryPolicy(attempts=4, sleep=waits.append, jitter=0.0, **kwargs)  # type: ignore[arg-type]
    return ApiClient(
        source="crm",
        base_url="https://api.vendor.example",
        auth=HeaderToken(SECRET),
        retry=retry,
        transport=httpx.MockTransport(handler),
    )


def scripted(*responses: httpx.Response) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if queue else httpx.Response(200, json={"ok": True})

    return handler, seen


def test_a_429_is_retried_after_the_time_it_asks_for() -> None:
    waits: list[float] = []
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(503))
    assert client(handler, waits).request_json("GET", "/things") == {"ok": True}
    assert waits == [7.0, 2.0]  # Retry-After as given; then exponential backoff (second attempt: 2 s)
    assert len(seen) == 3 and all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in seen)


def test_retriable_failures_give_up_after_the_attempts_with_the_last_error() -> None:
    waits: list[float] = []
    handler, seen = scripted(*[httpx.Response(502)] * 10)
    with pytest.raises(RetriableAPIError) as info:
        client(handler, waits).request_json("GET", "/things")
    assert (len(seen), waits) == (4, [1.0, 2.0, 4.0])
    assert info.value.status == 502 and info.value.source == "crm"


def test_a_retry_after_beyond_the_patience_of_a_run_is_not_waited_out() -> None:
    waits: list[float] = []
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "86400"}))
    with pytest.raises(RetriableAPIError) as info:
        client(handler, waits).request_json("GET", "/things")
    assert (len(seen), waits, info.value.retry_after) == (1, [], 86400)


@pytest.mark.parametrize(
    ("status", "kind"), [(400, FatalAPIError), (401, AuthenticationError), (403, FatalAPIError), (404, FatalAPIError)]
)
def test_other_4xx_are_fatal_and_not_retried(status: int, kind: type[Exception]) -> None:
    waits: list[float] = []
    handler, seen = scripted(httpx.Response(status))
    with pytest.raises(kind) as info:
        client(handler, waits).request_json("GET", "/things", params={"api_token": SECRET})
    assert len(seen) == 1 and waits == []
    assert "source 'crm'" in str(info.value) and SECRET not in str(info.value) and SECRET not in str(info.value.url)


def test_timeouts_and_connection_errors_are_retriable() -> None:
    waits: list[float] = []
    failures = [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=[1, 2])

    assert client(handler, waits).request_json("GET", "/things") == [1, 2]
    assert len(waits) == 2


def test_a_body_that_is_not_json_is_retried() -> None:
    waits: list[float] = []
    handler, _ = scripted(httpx.Response(200, text="<html>maintenance</html>"))
    assert client(handler, waits).request_json("GET", "/things") == {"ok": True}
    assert len(waits) == 1


def test_acquire_is_called_before_every_request_retries_included() -> None:
    order: list[str] = []
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "0"}))

    def record(request: httpx.Request) -> httpx.Response:
        order.append("request")
        return handler(request)

    api = client(record, [])
    api.acquire = lambda: order.append("acquire")
    api.request_json("GET", "/things")
    assert order == ["acquire", "request", "acquire", "request"]


def test_the_token_never_shows_in_a_repr() -> None:
    assert SECRET not in repr(HeaderToken(SECRET)) and SECRET not in repr(HeaderToken(SECRET, header="x-api-token"))
