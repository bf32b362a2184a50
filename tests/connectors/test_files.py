"""Reading JSONL and CSV activity files incrementally: what each page holds and where its cursor points."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from leadflow.connectors.files import FileActivitySource, Page
from tests.factories import jsonl, raw_event

NOW = datetime(2026, 10, 1, 12, 0)


def _read(source: FileActivitySource, file: Path, cursor: dict[str, Any] | None) -> list[Page]:
    return list(source.pages(file, cursor, now=NOW))


def _ids(pages: list[Page]) -> list[str]:
    return [r.source_id for p in pages for r in p.records]


def test_good_lines_become_records_and_bad_ones_are_rejected_with_location_and_raw_text(tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    bad_json = '{"id": "b1", "email": "x@example.com", \n'
    not_object = '["e9", "x@example.com"]\n'
    lines = [
        jsonl(raw_event(1)),
        bad_json,
        jsonl(raw_event(2, type="page_visit")),
        "\n",  # a blank line is skipped but still counts as a line
        jsonl(raw_event(3, email="not an email")),
        jsonl(raw_event(4, at="2027-01-01T00:00:00Z")),
        not_object,
        jsonl(raw_event(5)),
    ]
    file.write_text("".join(lines), encoding="utf-8")

    pages = _read(FileActivitySource("web", file), file, None)

    assert len(pages) == 1
    page = pages[0]
    assert page.stream == "activity.jsonl"
    assert [r.source_id for r in page.records] == ["e1", "e5"]
    assert [(r.location, r.reason) for r in page.rejected] == [
        ("activity.jsonl:2", "bad_json"),
        ("activity.jsonl:3", "unknown_type"),
        ("activity.jsonl:5", "bad_email"),
        ("activity.jsonl:6", "future_timestamp"),
        ("activity.jsonl:7", "bad_json"),
    ]
    assert [r.raw for r in page.rejected] == [lines[i].rstrip("\n") for i in (1, 2, 4, 5, 6)]
    assert "not valid JSON" in page.rejected[0].detail
    assert page.cursor["offset"] == file.stat().st_size and page.cursor["line"] == 8


def test_reading_from_the_returned_cursor_gives_nothing_and_appended_lines_are_picked_up(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(raw_event(1)) + jsonl(raw_event(2)), encoding="utf-8")
    source = FileActivitySource("web", file)
    cursor = _read(source, file, None)[-1].cursor

    assert _read(source, file, cursor) == []

    with file.open("a", encoding="utf-8") as fh:
        fh.write(jsonl(raw_event(3)) + "not json\n")
    pages = _read(source, file, cursor)
    assert _ids(pages) == ["e3"]
    assert [r.location for r in pages[0].rejected] == ["a.jsonl:4"]


def test_a_last_line_without_newline_waits_for_the_next_read(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    half = jsonl(raw_event(2))[:20]
    file.write_text(jsonl(raw_event(1)) + half, encoding="utf-8")
    source = FileActivitySource("web", file)

    pages = _read(source, file, None)
    assert _ids(pages) == ["e1"] and pages[0].rejected == []
    assert pages[-1].cursor["offset"] == len(jsonl(raw_event(1)).encode())

    with file.open("a", encoding="utf-8") as fh:
        fh.write(jsonl(raw_event(2))[20:])
    pages = _read(source, file, pages[-1].cursor)
    assert _ids(pages) == ["e2"] and pages[0].rejected == []


def test_pages_of_batch_size_each_carry_a_cursor_covering_exactly_their_lines(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text("".join(jsonl(raw_event(n)) for n in range(1, 6)), encoding="utf-8")
    source = FileActivitySource("web", file, batch_size=2)

    pages = _read(source, file, None)
    assert [[r.source_id for r in p.records] for p in pages] == [["e1", "e2"], ["e3", "e4"], ["e5"]]
    # A run that died after committing page 1 resumes at line 3.
    assert _ids(_read(source, file, pages[0].cursor)) == ["e3", "e4", "e5"]
    assert _ids(_read(source, file, pages[1].cursor)) == ["e5"]


def test_a_replaced_file_is_read_from_the_start(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(raw_event(1)) + jsonl(raw_event(2)), encoding="utf-8")
    source = FileActivitySource("web", file)
    cursor = _read(source, file, None)[-1].cursor

    file.write_text("".join(jsonl(raw_event(n)) for n in (7, 1, 2, 8, 9)), encoding="utf-8")
    assert _ids(_read(source, file, cursor)) == ["e7", "e1", "e2", "e8", "e9"]


def test_a_truncated_file_with_the_same_first_line_is_read_from_the_start(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text("".join(jsonl(raw_event(n)) for n in (1, 2, 3)), encoding="utf-8")
    source = FileActivitySource("web", file)
    cursor = _read(source, file, None)[-1].cursor

    file.write_text(jsonl(raw_event(1)), encoding="utf-8")
    assert _ids(_read(source, file, cursor)) == ["e1"]


def test_a_fresh_empty_file_still_gives_a_page_so_its_cursor_is_saved(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text("", encoding="utf-8")
    pages = _read(FileActivitySource("web", file), file, None)
    assert len(pages) == 1 and pages[0].records == [] and pages[0].cursor["offset"] == 0


CSV_HEADER = "id,Email,type,at,target,first_name,company,company_size,country,utm_source,campaign\n"


def test_csv_with_header_puts_lead_columns_in_the_profile_and_extra_columns_in_properties(tmp_path: Path) -> None:
    file = tmp_path / "crm.csv"
    file.write_bytes(
        (
            "\ufeff"
            + CSV_HEADER
            + 'c1,Anna@Example.com,form_submit,2026-09-01T09:00:00+02:00,/contact,Anna,"Acme, Inc.",250,nl,google,\r\n'
            + "c2,bob@example.com,page_view,2026-09-02T10:00:00Z,/pricing,,,,,,autumn\r\n"
            + "c3,carol@example.com,page_view,2026-09-02T10:00:00Z\r\n"
            + "c4,dave@example.com,webinar,2026-09-03T10:00:00Z,,,,lots,,,\r\n"
        ).encode("utf-8")
    )
    pages = _read(FileActivitySource("crm", file), file, None)
    records = pages[0].records

    assert [r.source_id for r in records] == ["c1", "c2"]
    anna, bob = records
    assert anna.email == "anna@example.com" and anna.occurred_at == datetime(2026, 9, 1, 7, 0)
    assert anna.profile == {"first_name": "Anna", "company": "Acme, Inc.", "company_size": 250, "country": "NL"}
    assert anna.properties == {"utm_source": "google"}
    assert bob.profile is None and bob.properties == {"campaign": "autumn"} and bob.target == "/pricing"
    assert [(r.location, r.reason) for r in pages[0].rejected] == [
        ("crm.csv:4", "bad_csv"),
        ("crm.csv:5", "bad_profile"),
    ]
    assert pages[0].rejected[0].raw == "c3,carol@example.com,page_view,2026-09-02T10:00:00Z"


def test_csv_appended_rows_are_read_without_the_header_again(tmp_path: Path) -> None:
    file = tmp_path / "crm.csv"
    file.write_text(CSV_HEADER + "c1,a@example.com,page_view,2026-09-01T09:00:00Z,,,,,,,\n", encoding="utf-8")
    source = FileActivitySource("crm", file)
    cursor = _read(source, file, None)[-1].cursor
    with file.open("a", encoding="utf-8") as fh:
        fh.write("c2,b@example.com,page_view,2026-09-01T09:00:00Z,,,,,,,\n")
    pages = _read(source, file, cursor)
    assert _ids(pages) == ["c2"] and pages[0].rejected == []


def test_a_csv_export_replaced_by_the_next_one_with_the_same_header_is_read_whole(tmp_path: Path) -> None:
    """Nightly exports overwrite the file and keep the header: resuming at the old offset would skip rows."""
    file = tmp_path / "crm.csv"
    file.write_text(CSV_HEADER + "c1,a@example.com,page_view,2026-09-01T09:00:00Z,,,,,,,\n", encoding="utf-8")
    source = FileActivitySource("crm", file)
    cursor = _read(source, file, None)[-1].cursor

    file.write_text(
        CSV_HEADER + "".join(f"d{n},d{n}@example.com,download,2026-09-02T09:00:00Z,,,,,,,\n" for n in range(1, 5)),
        encoding="utf-8",
    )
    pages = _read(source, file, cursor)
    assert _ids(pages) == ["d1", "d2", "d3", "d4"] and pages[0].rejected == []


def test_a_folder_source_lists_only_activity_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ("b.jsonl", "a.CSV", "c.csv", "notes.txt", "d.jsonl.tmp"):
        (folder / name).write_text("", encoding="utf-8")
    (folder / "sub.jsonl").mkdir()
    assert [p.name for p in FileActivitySource("web", folder).files()] == ["a.CSV", "b.jsonl", "c.csv"]


def test_a_missing_source_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source 'web'.*nope.jsonl"):
        FileActivitySource("web", tmp_path / "nope.jsonl").files()


def test_a_corrupt_line_with_nul_bytes_or_deep_nesting_is_rejected_not_fatal(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(b"\x00\x00\x00\n" + ("[" * 100_000 + "\n").encode() + jsonl(raw_event(1)).encode())
    pages = _read(FileActivitySource("web", file), file, None)
    assert _ids(pages) == ["e1"]
    assert [(r.location, r.reason) for r in pages[0].rejected] == [("a.jsonl:1", "bad_json"), ("a.jsonl:2", "bad_json")]


def test_lines_the_fast_json_parser_refuses_get_the_standard_parser_and_the_same_rules(tmp_path: Path) -> None:
    """orjson reads the common line; NaN, integers past 64 bits and invalid UTF-8 still go through `json`."""
    file = tmp_path / "a.jsonl"
    file.write_bytes(
        b'{"id": "n1", "email": "a@example.com", "type": "page_view", "at": "2026-09-01T10:00:00Z",'
        b' "properties": {"score": NaN, "big": 123456789012345678901234567890}}\n'
        b'{"id": "n2", "email": "b@example.com", "type": "page_view", "at": "2026-09-01T10:00:00Z",'
        b' "target": "/caf\xe9"}\n'
        b"\n"
        b'{"id": "n3", "email": "c@example.com", "type": "page_view", "at": "2026-09-01T10:00:00+02:00"}\n'
        b'{"id": "n4", "email": "c@example.com", "type": "page_view", "at": "not a time"}\n'
    )
    pages = _read(FileActivitySource("web", file), file, None)

    records = {r.source_id: r for r in pages[0].records}
    assert set(records) == {"n1", "n2", "n3"}
    assert records["n1"].properties["big"] == 123456789012345678901234567890
    assert records["n2"].target == "/caf\ufffd"
    assert records["n3"].occurred_at == datetime(2026, 9, 1, 8, 0)
    assert [(r.location, r.reason) for r in pages[0].rejected] == [("a.jsonl:5", "bad_timestamp")]
    assert pages[0].cursor["line"] == 5


def test_plus_addressing_can_be_stripped_so_tagged_addresses_are_one_lead(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text(jsonl(raw_event(1, email="Anna+News@x.com"), raw_event(2, email="anna@x.com")), encoding="utf-8")
    kept = _read(FileActivitySource("web", file), file, None)[0].records
    stripped = _read(FileActivitySource("web", file, plus_addressing="strip"), file, None)[0].records
    assert [r.email for r in kept] == ["anna+news@x.com", "anna@x.com"]
    assert [r.email for r in stripped] == ["anna@x.com", "anna@x.com"]
