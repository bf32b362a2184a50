"""Shared HTTP plumbing for vendor connectors: a client with retries, typed errors, the status reading.

A vendor call either works, fails in a way that may work later (`RetriableAPIError`: timeouts,
connection trouble, 429, 5xx, and whatever a vendor says is temporary), or fails in a way that
will not (`FatalAPIError`: an expired token, a missing permission, a malformed query). Only the
first kind is retried, waiting as long as the vendor's Retry-After asks, else backing off
exponentially with jitter (connectors/backoff.py). The errors are leaves of connectors/errors.py,
the status reading is connectors/status.py. Every error names the source, so a failed run says which connection
needs attention; tokens live in the client's auth and never appear in messages.

The client takes an optional `acquire()` callable, invoked before every request (retries
included): the flow layer passes one that takes a slot from a Prefect rate limit, so a vendor's
limit holds across tasks and workers. Nothing here imports Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import APIError, AuthenticationError, FatalAPIError, RetriableAPIError
from leadflow.connectors.status import Reading, parse_retry_after, read_status

__all__ = ["ApiClient", "Classifier", "HeaderToken", "classify_status", "failed"]

# Reads a response: None when it is a success, else the typed error to raise.
Classifier = Callable[[httpx.Response], "APIError | None"]


class HeaderToken(httpx.Auth):
    """Sends a secret in one header (`Authorization: Bearer …`, `x-api-token: …`); its repr hides it."""

    def __init__(self, token: str, *, header: str = "Authorization", scheme: str | None = "Bearer") -> None:
        self._header = header
        self._value = f"{scheme} {token}" if scheme else token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._value
        yield request

    def __repr__(self) -> str:
        return f"HeaderToken(header={self._header!r}, token=***)"


def _default_classify(source: str) -> Classifier:
    def classify(response: httpx.Response) -> APIError | None:
        return classify_status(source, response, message=response.reason_phrase or "request failed")

    return classify


def failed(response: httpx.Response) -> bool:
    """Whether the status says the call failed (connectors/status.py): anything but 2xx and 3xx."""
    return read_status(response.status_code) not in (Reading.ok, Reading.redirect)


def classify_status(source: str, response: httpx.Response, *, message: str, code: str | None = None) -> APIError | None:
    """The shared reading of the status (connectors/status.py) as a vendor error naming the source.

    2xx and 3xx are no error (redirects are not followed; a 300 may carry an answer), 401 refused
    credentials, 408/425/429/5xx retriable, everything else fatal.
    """
    if not failed(response):
        return None
    reading = read_status(response.status_code)
    status, url = response.status_code, _safe_url(response.request)
    if reading is Reading.retry:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RetriableAPIError(source, message, status=status, code=code, url=url, retry_after=retry_after)
    if reading is Reading.auth:
        return AuthenticationError(
            source, f"the credentials were refused: {message}", status=status, code=code, url=url
        )
    return FatalAPIError(source, message, status=status, code=code, url=url)


def _safe_url(request: httpx.Request) -> str:
    """The URL without its query: some vendors accept tokens as query parameters."""
    return str(request.url.copy_with(query=None))


class ApiClient:
    """An httpx client bound to one source: base URL, auth, retries, rate-limit slots, typed errors.

    `transport` (e.g. `httpx.MockTransport`) or a whole `client` can be injected; tests point
    `base_url` at a loopback server instead.
    """

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        auth: httpx.Auth | None = None,
        classify: Classifier | None = None,
        retry: RetryPolicy | None = None,
        acquire: Callable[[], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self.classify = classify or _default_classify(source)
        self.retry = retry or RetryPolicy()
        self.acquire = acquire
        self.requests = 0
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "leadflow", **(headers or {})},
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call, retried while it fails retriably; the parsed JSON body, or a typed error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, url, params=params, json=json, headers=headers)
            except RetriableAPIError as error:
                wait = self.retry.delay(attempt, error.retry_after)
                if wait is None:
                    raise
                self.retry.sleep(wait)

    def request_json_once(self, method: str, url: str, **kwargs: Any) -> Any:
        """One attempt, no retries: for creates whose retry must first look whether the last attempt landed."""
        return self._once(method, url, **kwargs)

    def _once(self, method: str, url: str, **kwargs: Any) -> Any:
        if self.acquire is not None:
            self.acquire()
        self.requests += 1
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetriableAPIError(self.source, f"timed out: {type(exc).__name__}", url=url) from exc
        except httpx.TransportError as exc:
            raise RetriableAPIError(self.source, f"connection failed: {exc}", url=url) from exc
        error = self.classify(response)
        if error is not None:
            raise error
        if response.status_code == 204 or not response.content:
            return None  # 204 No Content: an update that says nothing back
        try:
            return response.json()
        except ValueError as exc:
            raise RetriableAPIError(
                self.source, "the response is not JSON", status=response.status_code, url=_safe_url(response.request)
            ) from exc
