"""One raw record to a validated activity, or a RecordError with a reason a user can act on."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from leadflow.leads.db.models import ActivityType
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.records import RecordError, normalise_email

NOW = datetime(2026, 10, 1, 12, 0)


def _raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "evt-1",
        "email": "anna@example.com",
        "type": "page_view",
        "at": "2026-09-30T08:15:00Z",
        "target": "https://acme.example/pricing",
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not ...}


def _reason(raw: dict[str, Any]) -> RecordError:
    with pytest.raises(RecordError) as info:
        parse_activity(raw, now=NOW)
    return info.value


def test_a_good_record_is_parsed_whole() -> None:
    record = parse_activity(
        _raw(
            properties={"utm_source": "newsletter"},
            lead={"first_name": " Anna ", "company_size": "250", "country": "nl", "shoe_size": 41},
        ),
        now=NOW,
    )
    assert record.source_id == "evt-1"
    assert record.email == "anna@example.com"
    assert record.type is ActivityType.page_view
    assert record.occurred_at == datetime(2026, 9, 30, 8, 15)
    assert record.target == "https://acme.example/pricing"
    assert record.properties == {"utm_source": "newsletter"}
    # Known profile fields coerced and trimmed, the country upper-cased, unknown keys ignored.
    assert record.profile == {"first_name": "Anna", "company_size": 250, "country": "NL"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  Anna.Smith@Example.COM ", "anna.smith@example.com"), ("\tBOB@x.io\n", "bob@x.io"), ("c@d.co", "c@d.co")],
)
def test_emails_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected
    assert parse_activity(_raw(email=raw), now=NOW).email == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "anna",
        "anna@",
        "@example.com",
        "anna@example",
        "an na@example.com",
        "a@b@c.com",
        "anna@example.",
        42,
        "a\x00@example.com",
    ],
)
def test_things_that_are_not_email_addresses_are_refused(raw: object) -> None:
    assert normalise_email(raw) is None
    error = _reason(_raw(email=raw))
    assert error.reason == "bad_email"
    assert repr(raw) in error.detail


def test_an_email_longer_than_the_column_is_refused() -> None:
    assert normalise_email("a" * 310 + "@example.com") is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("x>,<victim@evil.example", "display name"),  # a mail parser reads two addresses in this To header
        ("Anna <anna@example.com>", "display name"),
        ("anna@example.com, eve@evil.example", "invalid characters"),
        ('"anna eve"@example.com', "Quoting"),
        ("a..b@example.com", "two periods"),
        ("anna@example.test", "special-use"),
    ],
)
def test_what_is_not_one_mailbox_is_quarantined_with_the_field_and_why(raw: str, why: str) -> None:
    """Issue 16: an address a mail parser could read as several, or as a name and an address, never gets in."""
    assert normalise_email(raw) is None
    error = _reason(_raw(email=raw))
    assert error.reason == "bad_email"
    assert "field 'email'" in error.detail and why in error.detail and repr(raw) in error.detail


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("jürgen@müller.example", "jürgen@müller.example"),
        ("Jürgen@XN--MLLER-KVA.EXAMPLE", "jürgen@müller.example"),  # the IDNA form is the same lead
        ("anna@bücher.example", "anna@bücher.example"),
        ("anna@xn--bcher-kva.example", "anna@bücher.example"),
    ],
)
def test_internationalised_addresses_are_accepted_and_normalised(raw: str, stored: str) -> None:
    assert normalise_email(raw) == stored
    assert parse_activity(_raw(email=raw), now=NOW).email == stored


@pytest.mark.parametrize(
    "at",
    [
        "2026-09-30T10:15:00+02:00",
        "2026-09-30T08:15:00Z",
        "2026-09-30T08:15:00",
        "2026-09-30T03:15:00-05:00",
        "2026-09-30 08:15:00+00:00",
    ],
)
def test_timestamps_with_zone_or_z_become_naive_utc(at: str) -> None:
    occurred = parse_activity(_raw(at=at), now=NOW).occurred_at
    assert occurred == datetime(2026, 9, 30, 8, 15)
    assert occurred.tzinfo is None


def test_an_offset_can_move_the_date() -> None:
    assert parse_activity(_raw(at="2026-09-30T01:00:00+03:00"), now=NOW).occurred_at == datetime(2026, 9, 29, 22, 0)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"id": ...}, "missing_id"),
        ({"id": None}, "missing_id"),
        ({"id": "   "}, "missing_id"),
        ({"email": ...}, "bad_email"),
        ({"email": "not-an-email"}, "bad_email"),
        ({"type": "page_visit"}, "unknown_type"),
        ({"type": ...}, "unknown_type"),
        ({"at": ...}, "bad_timestamp"),
        ({"at": "yesterday"}, "bad_timestamp"),
        ({"at": 1790000000}, "bad_timestamp"),
        ({"at": "2026-13-01T00:00:00Z"}, "bad_timestamp"),
        ({"at": "0001-01-01T00:00:00+01:00"}, "bad_timestamp"),
        ({"at": "2026-10-02T12:00:01Z"}, "future_timestamp"),
        ({"at": "2031-01-01T00:00:00Z"}, "future_timestamp"),
        ({"properties": ["a", "b"]}, "bad_properties"),
        ({"properties": "utm=x"}, "bad_properties"),
        ({"properties": {"blob": "x" * 20_000}}, "oversized_properties"),
        ({"lead": {"company_size": "about fifty"}}, "bad_profile"),
        ({"lead": {"company_size": "1,000"}}, "bad_profile"),
        ({"lead": {"company_size": -5}}, "bad_profile"),
        ({"lead": {"company_size": 10**12}}, "bad_profile"),
        ({"lead": {"company_size": float("inf")}}, "bad_profile"),
        ({"lead": {"country": "Netherlands"}}, "bad_profile"),
    ],
)
def test_each_problem_has_its_reason(overrides: dict[str, Any], reason: str) -> None:
    error = _reason(_raw(**overrides))
    assert error.reason == reason
    assert error.detail
    assert str(error) == f"{reason}: {error.detail}"


def test_the_first_problem_wins_in_a_fixed_order() -> None:
    """id, then email, then type, then time: the reason names the first thing to fix."""
    assert _reason({"email": "x", "type": "?", "at": "?"}).reason == "missing_id"
    assert _reason({"id": "1", "email": "x", "type": "?", "at": "?"}).reason == "bad_email"
    assert _reason({"id": "1", "email": "a@b.co", "type": "?", "at": "?"}).reason == "unknown_type"


def test_a_timestamp_within_a_day_ahead_is_accepted_for_clock_skew() -> None:
    assert parse_activity(_raw(at="2026-10-02T11:59:00Z"), now=NOW).occurred_at == datetime(2026, 10, 2, 11, 59)


def test_the_future_detail_names_the_timestamp() -> None:
    assert "2031-01-01T00:00:00Z" in _reason(_raw(at="2031-01-01T00:00:00Z")).detail


def test_the_bad_profile_detail_names_the_field_and_value() -> None:
    error = _reason(_raw(lead={"company_size": "about fifty"}))
    assert "lead.company_size" in error.detail and "about fifty" in error.detail
    assert "lead.country" in _reason(_raw(lead={"country": "Germany"})).detail


def test_optional_parts_may_be_absent_or_empty() -> None:
    record = parse_activity(_raw(target=..., properties=None, lead="not a mapping"), now=NOW)
    assert (record.target, record.properties, record.profile) == (None, {}, None)
    assert parse_activity(_raw(target="", lead={"title": ""}), now=NOW).target is None
    assert parse_activity(_raw(lead={"title": "", "company": None}), now=NOW).profile is None


def test_numeric_ids_and_types_with_spaces_are_accepted() -> None:
    record = parse_activity(_raw(id=12345, type=" demo_request "), now=NOW)
    assert record.source_id == "12345"
    assert record.type is ActivityType.demo_request


def test_text_that_no_database_can_store_is_cleaned_not_fatal() -> None:
    """NUL characters and lone surrogates (from JSON \\u escapes) would fail the whole page on insert."""
    record = parse_activity(
        _raw(id="e\x00v", target="/pri\x00cing\ud800", lead={"title": "CEO\x00", "company": "x" * 1000}), now=NOW
    )
    assert record.source_id == "ev"
    assert record.target is not None and "\x00" not in record.target and record.target.startswith("/pricing")
    record.target.encode("utf-8")
    assert record.profile == {"title": "CEO", "company": "x" * 300}


def test_long_target_and_id_are_cut_to_the_column_size() -> None:
    record = parse_activity(_raw(id="i" * 500, target="/" + "t" * 5000), now=NOW)
    assert len(record.source_id) == 200 and len(record.target or "") == 2000


ROW_CASES = [
    {},
    {"id": "  evt-2 ", "email": " Anna@Example.COM", "target": "  /x  "},
    {"target": ""},
    {"target": "   "},
    {"target": None},
    {"target": 42},
    {"target": "/caf\u00e9"},
    {"id": "\u00e9v\u00e9nement"},
    {"id": 17},
    {"id": ""},
    {"id": "   "},
    {"email": "not an email"},
    {"email": ["a@b.co"]},
    {"type": " page_view "},
    {"type": "page_visit"},
    {"type": ["page_view"]},
    {"at": "2026-09-30T08:15:00"},
    {"at": "2026-09-30 08:15:00Z"},
    {"at": "2026-09-30X08:15:00Z"},
    {"at": "2026-09-30T08:15+02:00Z"},
    {"at": "2026-09-30T08:15:00.5Z"},
    {"at": "2026-W40-3T08:15:00Z"},
    {"at": "2026-09-30T24:00:00Z"},
    {"at": "2026-10-02T12:00:01Z"},
    {"at": "2026-10-02T12:00:00Z"},
    {"at": "2026-09-30T10:15:00+02:00"},
    {"at": 20260930},
    {"properties": {"utm": "x", "n": 1}},
    {"properties": []},
    {"properties": "x"},
    {"properties": {"big": "x" * 20_000}},
    {"lead": {"company": " Acme ", "company_size": "250", "country": "nl", "consent": "yes"}},
    {"lead": {"country": "Netherlands"}},
    {"lead": "x"},
]


@pytest.mark.parametrize("overrides", ROW_CASES)
@pytest.mark.parametrize("raw_size", [None, 200, 100_000])
def test_the_row_fast_path_gives_exactly_the_record_or_the_error_of_the_general_path(
    overrides: dict[str, Any], raw_size: int | None
) -> None:
    from leadflow.leads.ingest.parser import ActivityParser
    from leadflow.leads.ingest.rows import record_row, row_record

    parse = ActivityParser(now=NOW)
    raw = _raw(**overrides)
    try:
        expected: Any = record_row(parse(raw, raw_size=raw_size))
    except RecordError as exc:
        expected = (exc.reason, exc.detail)
    try:
        got: Any = parse.row(raw, raw_size=raw_size)
    except RecordError as exc:
        got = (exc.reason, exc.detail)
    assert got == expected
    if isinstance(got, tuple) and len(got) == 7:
        assert record_row(row_record(got)) == got  # rows and records carry the same values


_LINE = b'"email": "x@example.com", "type": "page_view", "at": "2026-09-01T10:00:00Z"'
JSON_LINE_CASES = [
    b'{"id": "a", "id": "b", ' + _LINE + b"}",  # the last of repeated keys counts, as in orjson and json
    b'{"id": "a", ' + _LINE + b', "properties": {"n": NaN}}',  # json reads NaN, the fast decoder does not
    b'{"id": "a", ' + _LINE + b', "target": "\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"id": "a", ' + _LINE + b"}",  # a byte order mark
    b'{"id": "a", ' + _LINE + b', "x": [1, {"y": 2}]}',  # unknown keys are ignored
    b'{"id": "a", ' + _LINE + b', "properties": {"f": 1e400}}',
    b'{"id": "a", ' + _LINE + b', "properties": {"a": 1, "a": 2}}',
    b'{"id": "a", "email": "x@exa\xe9mple.com", "type": "page_view", "at": "2026-09-01T10:00:00Z"}',  # not UTF-8
    b'["id", "a"]',
    b"",
]


@pytest.mark.parametrize("line", [json.dumps(_raw(**o)).encode() for o in ROW_CASES] + JSON_LINE_CASES)
def test_the_json_line_fast_path_gives_the_row_of_the_general_path_or_leaves_the_line_to_it(line: bytes) -> None:
    """`json_row` (msgspec) answers only for lines in the common shape, with exactly the stored row the
    general path (decode, then `ActivityParser.__call__`) gives; any other line is left to that path."""
    from leadflow.leads.ingest.parser import ActivityParser
    from leadflow.leads.ingest.rows import record_row

    parse = ActivityParser(now=NOW)
    got = parse.json_row(line)
    if got is None:
        return
    raw = json.loads(line)
    assert got == record_row(parse(raw, raw_size=len(line) + 1))


def test_the_json_line_fast_path_takes_the_common_shape() -> None:
    from leadflow.leads.ingest.parser import ActivityParser

    parse = ActivityParser(now=NOW)
    line = json.dumps({**_raw(), "properties": {"utm": "x"}, "lead": {"company": "Acme", "company_size": 50}})
    assert parse.json_row(line.encode()) == (
        "evt-1",
        "anna@example.com",
        "page_view",
        "2026-09-30 08:15:00.000000",
        "https://acme.example/pricing",
        '{"utm":"x"}',
        {"company": "Acme", "company_size": 50},
    )
