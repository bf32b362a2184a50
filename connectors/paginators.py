"""One paginator per pagination style, as small objects (after dlt's REST client).

A paginator reads each response (`update_state`), says whether there is another page
(`has_next_page`), and turns the request just made into the next one (`next_request`).
Streams pick a style; the loop that drives them is the same for every vendor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "CursorPaginator",
    "HasMorePaginator",
    "NextUrlPaginator",
    "PageRequest",
    "Paginator",
    "dig",
]


@dataclass(frozen=True)
class PageRequest:
    """One HTTP call: a path relative to the source's base URL (or a path the vendor handed back)."""

    url: str
    method: str = "GET"
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None


def dig(body: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in nested mappings, or None when any step is missing."""
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


class Paginator(ABC):
    has_next_page: bool = True

    @abstractmethod
    def update_state(self, body: Any) -> None:
        """Read what the response says about the next page."""

    @abstractmethod
    def next_request(self, request: PageRequest) -> PageRequest:
        """The request for the next page, derived from the one just made."""


class CursorPaginator(Paginator):
    """An opaque cursor in the body (`paging.next.after`, `additional_data.next_cursor`), sent back
    as a query parameter or, for POST searches, as a key of the JSON body."""

    def __init__(self, cursor_path: tuple[str, ...], param: str, *, in_body: bool = False) -> None:
        self.cursor_path = cursor_path
        self.param = param
        self.in_body = in_body
        self.cursor: str | None = None

    def update_state(self, body: Any) -> None:
        cursor = dig(body, self.cursor_path)
        self.cursor = str(cursor) if cursor not in (None, "") else None
        self.has_next_page = self.cursor is not None

    def next_request(self, request: PageRequest) -> PageRequest:
        if self.in_body:
            return replace(request, json={**(request.json or {}), self.param: self.cursor})
        return replace(request, params={**(request.params or {}), self.param: self.cursor})


class HasMorePaginator(Paginator):
    """A `hasMore` flag and an `offset` token to send back (HubSpot's v1 APIs)."""

    def __init__(self, *, has_more: str = "hasMore", offset: str = "offset", param: str = "offset") -> None:
        self.has_more_key = has_more
        self.offset_key = offset
        self.param = param
        self.offset: str | None = None

    def update_state(self, body: Any) -> None:
        offset = dig(body, (self.offset_key,))
        self.offset = str(offset) if offset not in (None, "") else None
        self.has_next_page = bool(dig(body, (self.has_more_key,))) and self.offset is not None

    def next_request(self, request: PageRequest) -> PageRequest:
        return replace(request, params={**(request.params or {}), self.param: self.offset})


class NextUrlPaginator(Paginator):
    """A URL for the next page (Salesforce's `nextRecordsUrl`, absent once `done` is true)."""

    def __init__(self, *, next_url: str = "nextRecordsUrl", done: str | None = "done") -> None:
        self.next_url_key = next_url
        self.done_key = done
        self.next_url: str | None = None

    def update_state(self, body: Any) -> None:
        url = dig(body, (self.next_url_key,))
        done = bool(dig(body, (self.done_key,))) if self.done_key else False
        self.next_url = str(url) if url and not done else None
        self.has_next_page = self.next_url is not None

    def next_request(self, request: PageRequest) -> PageRequest:
        assert self.next_url is not None
        return PageRequest(url=self.next_url, method="GET")
