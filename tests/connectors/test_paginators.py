"""Paginators turn a response into the next request; stream state keeps the run's start apart from what it saw."""

from __future__ import annotations

from datetime import UTC, datetime

from leadflow.connectors.paginators import CursorPaginator, HasMorePaginator, NextUrlPaginator, PageRequest
from leadflow.connectors.streams import StreamState, parse_moment, profile_from

T1 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 9, 2, 9, 0, tzinfo=UTC)
T3 = datetime(2026, 9, 3, 9, 0, tzinfo=UTC)


def test_a_cursor_goes_back_as_a_query_parameter_or_in_a_search_body() -> None:
    query = CursorPaginator(("additional_data", "next_cursor"), "cursor")
    query.update_state({"data": [1], "additional_data": {"next_cursor": "abc"}})
    first = PageRequest(url="/api/v2/persons", params={"limit": 2})
    assert query.has_next_page and query.next_request(first).params == {"limit": 2, "cursor": "abc"}
    query.update_state({"data": [], "additional_data": {"next_cursor": None}})
    assert not query.has_next_page

    body = CursorPaginator(("paging", "next", "after"), "after", in_body=True)
    body.update_state({"results": [], "paging": {"next": {"after": "200", "link": "?after=200"}}})
    search = PageRequest(url="/crm/v3/objects/contacts/search", method="POST", json={"limit": 100})
    assert body.next_request(search).json == {"limit": 100, "after": "200"}
    body.update_state({"results": []})  # the last page has no paging at all
    assert not body.has_next_page


def test_has_more_and_an_offset_token() -> None:
    paginator = HasMorePaginator()
    paginator.update_state({"events": [], "hasMore": True, "offset": "tok"})
    assert paginator.next_request(PageRequest(url="/email/public/v1/events")).params == {"offset": "tok"}
    paginator.update_state({"events": [], "hasMore": False, "offset": "tok2"})
    assert not paginator.has_next_page


def test_a_next_url_until_done() -> None:
    paginator = NextUrlPaginator()
    paginator.update_state({"done": False, "nextRecordsUrl": "/services/data/v61.0/query/01g-2000", "records": []})
    assert paginator.next_request(PageRequest(url="/q", params={"q": "SELECT"})) == PageRequest(
        url="/services/data/v61.0/query/01g-2000"
    )
    paginator.update_state({"done": True, "records": []})
    assert not paginator.has_next_page


def test_state_moves_since_forward_only_when_a_run_reaches_the_end() -> None:
    state = StreamState.from_cursor(None, start=T1).begin()
    assert state.resume_from(ordered=True) == T1 and state.resume_from(ordered=False) == T1
    state = state.advance(T2, last=False)
    assert state.to_cursor() == {"since": "2026-09-01T09:00:00Z", "seen": "2026-09-02T09:00:00Z", "done": False}

    # The run dies here. The next one resumes an ordered stream where it stopped, an unordered one from the start.
    resumed = StreamState.from_cursor(state.to_cursor(), start=None).begin()
    assert resumed.resume_from(ordered=True) == T2 and resumed.resume_from(ordered=False) == T1
    finished = resumed.advance(T3, last=False).advance(None, last=True)
    assert finished.to_cursor() == {"since": "2026-09-03T09:00:00Z", "seen": None, "done": True}
    assert StreamState.from_cursor(finished.to_cursor(), start=T1).begin().resume_from(ordered=False) == T3


def test_vendor_times_and_profiles_are_read_leniently() -> None:
    assert parse_moment(1788253200000) == parse_moment("2026-09-01T09:00:00Z") == T1
    assert parse_moment("2026-09-01T09:00:00.000+0000") == T1 and parse_moment("2026-09-01") is not None
    assert parse_moment("yesterday") is None and parse_moment(None) is None
    record = {"numemployees": "1,000+", "country": "Netherlands", "Account": {"Name": "Acme"}, "title": ""}
    fields = {"company_size": "numemployees", "country": "country", "company": "Account.Name", "title": "title"}
    assert profile_from(record, fields) == {"company_size": 1000, "company": "Acme"}
