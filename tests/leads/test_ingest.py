"""Files to database, driven the way the ingest flow drives it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from leadflow.connectors.files import FileActivitySource
from leadflow.connectors.sync import SyncTotals, sync_source
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Activity, ConnectorCursor, Lead, Quarantine
from leadflow.leads.ingest.cursors import load_cursor
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.records import parse_profile
from leadflow.leads.ingest.store import store_batch
from tests.factories import jsonl, raw_event

NOW = datetime(2026, 10, 1, 12, 0)


def ingest(engine: Engine, source: FileActivitySource, now: datetime = NOW) -> SyncTotals:
    """What the ingest flow does for one source."""
    return sync_source(engine=engine, source=source, now=now)


def _append(file: Path, text: str) -> None:
    with file.open("a", encoding="utf-8") as fh:
        fh.write(text)


def _activity(engine: Engine, source: str | None = None) -> list[tuple[Any, ...]]:
    with session_scope(engine) as session:
        stmt = (
            select(
                Activity.source_id,
                Lead.email,
                Activity.type,
                Activity.occurred_at,
                Activity.target,
                Activity.properties,
            )
            .join(Lead, Lead.id == Activity.lead_id)
            .order_by(Activity.source_id)
        )
        if source is not None:
            stmt = stmt.where(Activity.source == source)
        return [tuple(row) for row in session.execute(stmt).all()]


def _source_ids(engine: Engine) -> list[str]:
    return [row[0] for row in _activity(engine)]


def _quarantine(engine: Engine) -> list[tuple[str, str, str, str]]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(Quarantine.source, Quarantine.location, Quarantine.reason, Quarantine.raw).order_by(Quarantine.id)
        ).all()
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _lead(engine: Engine, email: str) -> Lead:
    with session_scope(engine) as session:
        lead = session.execute(select(Lead).where(Lead.email == email)).scalar_one()
        session.expunge(lead)
        return lead


def _count(engine: Engine, table: Any) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(table)).scalar_one()


def test_good_lines_are_stored_and_bad_ones_quarantined_with_reason_location_and_raw(
    engine: Engine, tmp_path: Path
) -> None:
    file = tmp_path / "activity.jsonl"
    bad_lines = [
        '{"id": "x1", "email": "q@example.com", "type": "page_view", "at": ',
        json.dumps(raw_event(91, type="page_visit")),
        json.dumps(raw_event(92, email="q at example.com")),
        json.dumps(raw_event(93, at="2030-01-01T00:00:00Z")),
    ]
    file.write_text(
        jsonl(raw_event(1, properties={"utm": "mail"}), raw_event(2, at="2026-09-15T12:00:00+02:00"))
        + bad_lines[0]
        + "\n"
        + bad_lines[1]
        + "\n"
        + jsonl(raw_event(3))
        + bad_lines[2]
        + "\n"
        + bad_lines[3]
        + "\n",
        encoding="utf-8",
    )

    totals = ingest(engine, FileActivitySource("website", file))

    assert (totals.inserted, totals.duplicates, totals.new_leads, totals.quarantined) == (3, 0, 3, 4)
    assert _activity(engine) == [
        ("e1", "lead1@example.com", "page_view", datetime(2026, 9, 2, 10, 0), "/page/1", {"utm": "mail"}),
        ("e2", "lead2@example.com", "page_view", datetime(2026, 9, 15, 10, 0), "/page/2", {}),
        ("e3", "lead3@example.com", "page_view", datetime(2026, 9, 4, 10, 0), "/page/3", {}),
    ]
    assert _quarantine(engine) == [
        ("website", "activity.jsonl:3", "bad_json", bad_lines[0]),
        ("website", "activity.jsonl:4", "unknown_type", bad_lines[1]),
        ("website", "activity.jsonl:6", "bad_email", bad_lines[2]),
        ("website", "activity.jsonl:7", "future_timestamp", bad_lines[3]),
    ]
    # Nobody was created for the rejected lines.
    assert _count(engine, Lead) == 3


def test_rerunning_from_the_saved_cursor_stores_nothing_new(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1), raw_event(2, type="nope"), raw_event(3)), encoding="utf-8")
    source = FileActivitySource("website", file)
    ingest(engine, source)

    again = ingest(engine, source)

    assert (again.inserted, again.duplicates, again.quarantined) == (0, 0, 0)
    assert _source_ids(engine) == ["e1", "e3"]
    assert len(_quarantine(engine)) == 1
    with session_scope(engine) as session:
        cursor = load_cursor(session, source="website", stream="activity.jsonl")
    assert cursor is not None and cursor["offset"] == file.stat().st_size and cursor["line"] == 3


def test_appended_lines_are_the_only_ones_read_next_time(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1), raw_event(2)), encoding="utf-8")
    source = FileActivitySource("website", file)
    ingest(engine, source)

    _append(file, jsonl(raw_event(3), raw_event(4, email="broken")))
    totals = ingest(engine, source)

    assert (totals.inserted, totals.duplicates, totals.quarantined) == (1, 0, 1)
    assert _source_ids(engine) == ["e1", "e2", "e3"]
    assert [q[1:3] for q in _quarantine(engine)] == [("activity.jsonl:4", "bad_email")]


def test_a_last_line_still_being_written_waits_for_the_next_run(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    complete = json.dumps(raw_event(2))
    file.write_text(jsonl(raw_event(1)) + complete[:25], encoding="utf-8")
    source = FileActivitySource("website", file)

    first = ingest(engine, source)
    assert (first.inserted, first.quarantined) == (1, 0)
    assert _source_ids(engine) == ["e1"]

    _append(file, complete[25:] + "\n")
    second = ingest(engine, source)
    assert (second.inserted, second.quarantined) == (1, 0)
    assert _source_ids(engine) == ["e1", "e2"]
    assert _quarantine(engine) == []


def test_a_replaced_file_is_read_from_the_start_and_known_ids_are_ignored(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1), raw_event(2)), encoding="utf-8")
    source = FileActivitySource("website", file)
    ingest(engine, source)

    file.write_text(jsonl(raw_event(5), raw_event(1), raw_event(2), raw_event(6)), encoding="utf-8")
    totals = ingest(engine, source)

    assert (totals.inserted, totals.duplicates) == (2, 2)
    assert _source_ids(engine) == ["e1", "e2", "e5", "e6"]
    assert _count(engine, Activity) == 4


def test_the_same_id_twice_in_one_file_is_stored_once(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1), raw_event(1, type="download")), encoding="utf-8")
    totals = ingest(engine, FileActivitySource("website", file))
    assert (totals.inserted, totals.duplicates) == (1, 1)
    assert [(row[0], row[2]) for row in _activity(engine)] == [("e1", "page_view")]


def test_the_same_id_from_another_source_is_another_activity(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text(jsonl(raw_event(1)), encoding="utf-8")
    (tmp_path / "b" / "x.jsonl").write_text(jsonl(raw_event(1)), encoding="utf-8")
    ingest(engine, FileActivitySource("web", tmp_path / "a"))
    totals = ingest(engine, FileActivitySource("crm", tmp_path / "b"))
    assert totals.inserted == 1
    assert len(_activity(engine, "web")) == len(_activity(engine, "crm")) == 1


def test_csv_extra_columns_become_properties_and_lead_columns_the_profile(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "crm.csv"
    file.write_text(
        "id,email,type,at,target,first_name,title,company_size,country,utm_source,deal_owner\n"
        "c1, Anna@Example.com ,form_submit,2026-09-01T09:00:00Z,/contact,Anna,CTO,250,nl,google,\n"
        "c2,anna@example.com,page_view,2026-09-03T09:00:00Z,/pricing,,,,,,mark\n"
        "c3,bob@example.com,page_view,2026-09-02T09:00:00Z,/blog,Bob,,,,,\n",
        encoding="utf-8",
    )
    totals = ingest(engine, FileActivitySource("crm", file))

    assert (totals.inserted, totals.new_leads, totals.quarantined) == (3, 2, 0)
    rows = {row[0]: row for row in _activity(engine)}
    assert rows["c1"][1] == "anna@example.com" and rows["c1"][5] == {"utm_source": "google"}
    assert rows["c2"][5] == {"deal_owner": "mark"}
    anna = _lead(engine, "anna@example.com")
    assert (anna.first_name, anna.title, anna.company_size, anna.country) == ("Anna", "CTO", 250, "NL")
    assert anna.last_activity_at == datetime(2026, 9, 3, 9, 0)
    assert _lead(engine, "bob@example.com").first_name == "Bob"


def test_a_folder_source_keeps_a_cursor_per_file(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "web.jsonl").write_text(jsonl(raw_event(1), raw_event(2)), encoding="utf-8")
    (folder / "crm.csv").write_text(
        "id,email,type,at\nc1,c1@example.com,download,2026-09-01T00:00:00Z\n", encoding="utf-8"
    )
    (folder / "README.txt").write_text("not activity\n", encoding="utf-8")
    source = FileActivitySource("inbox", folder)
    ingest(engine, source)

    with session_scope(engine) as session:
        streams = dict(
            session.execute(
                select(ConnectorCursor.stream, ConnectorCursor.value).where(ConnectorCursor.source == "inbox")
            ).all()
        )
    assert set(streams) == {"web.jsonl", "crm.csv"}
    assert streams["web.jsonl"]["offset"] == (folder / "web.jsonl").stat().st_size
    assert streams["crm.csv"]["offset"] == (folder / "crm.csv").stat().st_size

    _append(folder / "crm.csv", "c2,c2@example.com,webinar,2026-09-02T00:00:00Z\n")
    (folder / "later.jsonl").write_text(jsonl(raw_event(7)), encoding="utf-8")
    totals = ingest(engine, source)
    assert (totals.inserted, totals.duplicates) == (2, 0)
    assert _source_ids(engine) == ["c1", "c2", "e1", "e2", "e7"]


def test_leads_are_one_per_normalised_email(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(
        jsonl(raw_event(1, email="  Anna@X.com"), raw_event(2, email="anna@x.com"), raw_event(3, email="ANNA@x.COM ")),
        encoding="utf-8",
    )
    source = FileActivitySource("website", file)
    totals = ingest(engine, source)
    assert (totals.inserted, totals.new_leads) == (3, 1)

    _append(file, jsonl(raw_event(4, email="Anna@x.com")))
    assert ingest(engine, source).new_leads == 0
    with session_scope(engine) as session:
        assert session.execute(select(Lead.email)).scalars().all() == ["anna@x.com"]
    assert {row[1] for row in _activity(engine)} == {"anna@x.com"}


def test_profile_fields_are_filled_and_not_wiped_by_records_without_them(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1, email="anna@x.com")), encoding="utf-8")
    source = FileActivitySource("website", file)
    ingest(engine, source)
    assert _lead(engine, "anna@x.com").title is None

    _append(
        file,
        jsonl(
            raw_event(2, email="anna@x.com", lead={"first_name": "Anna", "title": "Manager", "industry": "software"}),
            raw_event(3, email="anna@x.com"),
        ),
    )
    ingest(engine, source)
    _append(file, jsonl(raw_event(4, email="anna@x.com", lead={"title": "Director", "company_size": "500"})))
    ingest(engine, source)

    anna = _lead(engine, "anna@x.com")
    assert (anna.first_name, anna.title, anna.industry, anna.company_size) == ("Anna", "Director", "software", 500)


def test_new_leads_of_one_page_keep_each_its_own_fields_and_crm_id(engine: Engine) -> None:
    """New leads of differing profile shapes (and CRM ids) arrive in one page: each lead gets exactly its own."""
    records = [
        parse_activity(raw_event(1, email="plain@x.com"), now=NOW),
        parse_activity(raw_event(2, email="anna@x.com", lead={"first_name": "Anna", "company_size": "40"}), now=NOW),
        parse_activity(
            raw_event(3, email="bob@x.com", lead={"title": "CTO", "consent": "yes", "country": "nl"}), now=NOW
        ),
        parse_activity(raw_event(4, email="cleo@x.com", lead={"company_size": 7, "first_name": "Cleo"}), now=NOW),
    ]
    profiles = [
        parse_profile({"id": "c-1", "email": "dora@x.com", "crm_id": "D1", "lead": {"last_name": "Diaz"}}),
        parse_profile({"id": "c-2", "email": "anna@x.com", "crm_id": "A1"}),
    ]
    with session_scope(engine) as session:
        result = store_batch(session=session, source="hubspot", records=records, profiles=profiles)
    assert result.new_leads == 5

    fields = ("first_name", "last_name", "title", "company_size", "country", "consent", "crm_ids", "stage", "score")
    with session_scope(engine) as session:
        rows = session.execute(select(Lead.email, *(getattr(Lead, f) for f in fields)).order_by(Lead.email)).all()
    assert [tuple(row) for row in rows] == [
        ("anna@x.com", "Anna", None, None, 40, None, None, {"hubspot": "A1"}, "suspect", 0.0),
        ("bob@x.com", None, None, "CTO", None, "NL", True, {}, "suspect", 0.0),
        ("cleo@x.com", "Cleo", None, None, 7, None, None, {}, "suspect", 0.0),
        ("dora@x.com", None, "Diaz", None, None, None, None, {"hubspot": "D1"}, "suspect", 0.0),
        ("plain@x.com", None, None, None, None, None, None, {}, "suspect", 0.0),
    ]
    anna = _lead(engine, "anna@x.com")
    assert anna.created_at == anna.updated_at  # one stamp for the page's new leads, the time they were made
    assert abs((datetime.now(UTC).replace(tzinfo=None) - anna.created_at).total_seconds()) < 60
    assert anna.rescore_at is not None and anna.rescore_at >= anna.created_at  # due for requalification


def test_activity_times_land_on_the_lead_and_never_move_backwards(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    email = "anna@x.com"
    file.write_text(
        jsonl(
            raw_event(1, email=email, at="2026-09-10T10:00:00Z"),
            raw_event(2, email=email, type="unsubscribe", at="2026-09-12T08:00:00Z"),
            raw_event(3, email=email, type="email_bounce", at="2026-09-11T08:00:00Z"),
        ),
        encoding="utf-8",
    )
    source = FileActivitySource("website", file)
    ingest(engine, source)
    lead = _lead(engine, email)
    assert lead.last_activity_at == datetime(2026, 9, 12, 8, 0)
    assert lead.unsubscribed_at == datetime(2026, 9, 12, 8, 0)
    assert lead.bounced_at == datetime(2026, 9, 11, 8, 0)

    # Late-arriving older events and ordinary activity: nothing moves back, nothing is cleared.
    _append(
        file,
        jsonl(
            raw_event(4, email=email, at="2026-09-01T10:00:00Z"),
            raw_event(5, email=email, type="unsubscribe", at="2026-09-20T08:00:00Z"),
            raw_event(6, email=email, type="email_bounce", at="2026-09-25T08:00:00Z"),
            raw_event(7, email=email, type="email_open", at="2026-09-18T08:00:00Z"),
        ),
    )
    ingest(engine, source)
    lead = _lead(engine, email)
    assert lead.last_activity_at == datetime(2026, 9, 25, 8, 0)
    assert lead.unsubscribed_at == datetime(2026, 9, 12, 8, 0)  # the first unsubscribe is when it happened
    assert lead.bounced_at == datetime(2026, 9, 11, 8, 0)

    _append(file, jsonl(raw_event(8, email=email, at="2026-09-02T10:00:00Z")))
    ingest(engine, source)
    assert _lead(engine, email).last_activity_at == datetime(2026, 9, 25, 8, 0)


def test_duplicates_do_not_touch_lead_times(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(jsonl(raw_event(1, email="a@x.com", at="2026-09-01T00:00:00Z")), encoding="utf-8")
    source = FileActivitySource("website", file)
    ingest(engine, source)
    # Replaced file re-sends e1 with a later time: it is the same event, already stored.
    file.write_text(
        jsonl(raw_event(1, email="a@x.com", type="unsubscribe", at="2026-09-20T00:00:00Z")), encoding="utf-8"
    )
    assert ingest(engine, source).duplicates == 1
    lead = _lead(engine, "a@x.com")
    assert (lead.last_activity_at, lead.unsubscribed_at) == (datetime(2026, 9, 1), None)


def test_odd_text_in_one_line_does_not_block_the_source(engine: Engine, tmp_path: Path) -> None:
    """Over-long profile text, NUL bytes and lone surrogates once failed the whole page on insert (PostgreSQL)."""
    file = tmp_path / "activity.jsonl"
    file.write_bytes(
        jsonl(
            raw_event(
                1, email="a@x.com", lead={"title": "Head of " + "Growth " * 80, "timezone": "Europe/" + "x" * 100}
            ),
            raw_event(2, email="b@x.com", target="/pricing\u0000?q=\ud800"),
        ).encode("utf-8")
        + b'{"id": "e3", "email": "c@x.com" \x00 oops\n'
        + jsonl(raw_event(4, email="d@x.com", lead={"company_size": 10**15})).encode("utf-8")
    )
    totals = ingest(engine, FileActivitySource("website", file))

    assert (totals.inserted, totals.quarantined) == (2, 2)
    title = _lead(engine, "a@x.com").title
    assert title is not None and title.startswith("Head of Growth") and len(title) == 300
    assert [q[1:3] for q in _quarantine(engine)] == [
        ("activity.jsonl:3", "bad_json"),
        ("activity.jsonl:4", "bad_profile"),
    ]
    assert "oops" in _quarantine(engine)[0][3]


@pytest.mark.parametrize("batch_size", [1, 2, 5000])
def test_page_size_does_not_change_what_is_stored(engine: Engine, tmp_path: Path, batch_size: int) -> None:
    file = tmp_path / "activity.jsonl"
    file.write_text(
        jsonl(*(raw_event(n, email=f"l{n % 3}@x.com") for n in range(1, 8)), raw_event(8, type="?")), encoding="utf-8"
    )
    totals = ingest(engine, FileActivitySource("website", file, batch_size=batch_size))
    assert (totals.inserted, totals.new_leads, totals.quarantined) == (7, 3, 1)
    assert totals.pages >= -(-8 // batch_size)
    assert _count(engine, Lead) == 3
