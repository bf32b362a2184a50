"""Shared HTTP plumbing for vendor connectors: typed errors, a retry policy that honours Retry-After.

A vendor call either works, fails in a way that may work later (`RetriableAPIError`: timeouts,
connection trouble, 429, 5xx, and whatever a vendor says is temporary), or fails in a way that
will not (`FatalAPIError`: an expired token, a missing permission, a malformed query). Only the
first kind is retried, waiting as long as the vendor's Retry-After asks, else backing off
exponentially with jitter. Every error names the source, so a failed run says which connection
needs attention; tokens live in the client's auth and never appear in messages.

The client takes an optional `acquire()` callable, invoked before every request (retries
included): the flow layer passes one that takes a slot from a Prefect rate limit, so a vendor's
limit holds across tasks and workers. Nothing here imports Prefect.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "APIError",
    "ApiClient",
    "AuthenticationError",
    "FatalAPIError",
    "HeaderToken",
    "RetriableAPIError",
    "RetryPolicy",
    "parse_retry_after",
]

# Reads a response: None when it is a success, else the typed error to raise.
Classifier = Callable[[httpx.Response], "APIError | None"]


class APIError(Exception):
    """A vendor call that failed; `source` names the configured source, `status` the HTTP status (if any)."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
    ) -> None:
        self.source = source
        self.status = status
        self.code = code
        self.url = url
        self.detail = message  # without the source prefix, for callers that word their own errors
        where = f" ({status}{' ' + code if code else ''})" if status is not None else ""
        super().__init__(f"source {source!r}: {message}{where}")


class RetriableAPIError(APIError):
    """Timeout, connection trouble, rate limit or server error: the same call may work later."""

    def __init__(self, source: str, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(source, message, **kwargs)
        self.retry_after = retry_after


class FatalAPIError(APIError):
    """The vendor refused the call for a reason that retrying will not fix."""


class AuthenticationError(FatalAPIError):
    """The credentials were refused (expired, revoked, wrong): someone has to renew them."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or junk."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry retriable failures.

    A Retry-After from the vendor is honoured as given (plus a little jitter so concurrent
    workers do not return in lock step); without one the delay doubles from `base_delay` up to
    `max_delay`. A Retry-After longer than `max_retry_after` (a daily quota, say) is not waited
    out inside a run: the error is raised so the run ends and the next one resumes from the cursor.
    """

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    jitter: float = 0.1
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def delay(self, attempt: int, error: RetriableAPIError) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if attempt >= self.attempts:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after * (1 + random.uniform(0, self.jitter))
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return backoff * (1 + random.uniform(-self.jitter, self.jitter))


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


def classify_status(source: str, response: httpx.Response, *, message: str, code: str | None = None) -> APIError | None:
    """The generic reading of an HTTP status: 2xx fine, 401 auth, 408/425/429/5xx retriable, other 4xx fatal."""
    status = response.status_code
    if status < 400:
        return None
    url = _safe_url(response.request)
    if status in (408, 425, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RetriableAPIError(source, message, status=status, code=code, url=url, retry_after=retry_after)
    if status == 401:
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
                wait = self.retry.delay(attempt, error)
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
