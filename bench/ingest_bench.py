"""Ingest speed: JSONL file → SQLite through leadflow, beside raw sqlite3 executemany of the same rows.

    python bench/ingest_bench.py                       # 1,000,000 events over 50,000 leads
    python bench/ingest_bench.py --events 200000 --leads 10000 --batch-size 20000

The data is deterministic (a seeded generator): events spread over 90 days in time order, a
profile on each lead's first event, properties on a third of them, and 1% of the events sent
twice (same id), so deduplication is part of the work. Nothing is timed until the file is
written and the databases are created and migrated.

Three figures from the same run:

- floor: raw `sqlite3` `executemany` of the finished activity rows (lead ids resolved, times
  formatted, properties serialised) into a fresh table with the same unique (source, source_id)
  index, committed per batch;
- floor with leadflow's indexes: the same, into a table that also has the (lead_id, occurred_at)
  index that leadflow's activity table carries;
- leadflow: `FileActivitySource` + `sync_source` (parse, validate, upsert leads, insert activity,
  update the leads' activity times, save the cursor per page) into a fresh, migrated workspace
  database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.files import FileActivitySource  # noqa: E402
from connectors.sync import sync_source  # noqa: E402
from leads.db import make_engine, upgrade  # noqa: E402
from leads.ingest import SQLITE_CACHE_KIB  # noqa: E402

END = datetime(2026, 10, 1, 9, 0)
TYPES = [("page_view", 60), ("email_open", 15), ("email_click", 8), ("download", 5), ("webinar", 2)]
TYPES += [("form_submit", 3), ("newsletter_signup", 2), ("ad_click", 4), ("demo_request", 1)]
TITLES = ["Head of Marketing", "CTO", "Marketing Manager", "Analyst", "VP Sales", "Founder"]
INDUSTRIES = ["software", "finance", "logistics", "manufacturing", "retail"]
COUNTRIES = ["NL", "DE", "GB", "FR", "DK", "SE"]


def generate(path: Path, *, events: int, leads: int, seed: int) -> int:
    """Write `events` lines (1% of them repeats of an earlier id); returns the number of distinct ids."""
    rng = random.Random(seed)
    kinds = [k for k, w in TYPES for _ in range(w)]
    start = END - timedelta(days=90)
    step = (END - start).total_seconds() / events
    seen_lead: set[int] = set()
    distinct = 0
    with path.open("w", encoding="utf-8") as out:
        for n in range(events):
            at = start + timedelta(seconds=n * step)
            if n > 100 and rng.random() < 0.01:
                event_id = f"ev-{rng.randrange(distinct):08d}"  # the same event sent again
            else:
                event_id = f"ev-{distinct:08d}"
                distinct += 1
            lead = rng.randrange(leads)
            kind = rng.choice(kinds)
            event: dict[str, object] = {
                "id": event_id,
                "email": f"lead{lead:06d}@company{lead % 997:03d}.example",
                "type": kind,
                "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "target": f"/page/{rng.randrange(200)}" if kind == "page_view" else f"asset-{rng.randrange(20)}",
            }
            if n % 3 == 0:
                event["properties"] = {"utm_source": rng.choice(["linkedin", "google", "newsletter"])}
            if lead not in seen_lead:
                seen_lead.add(lead)
                event["lead"] = {
                    "first_name": f"First{lead}",
                    "last_name": f"Last{lead}",
                    "company": f"Company {lead % 997}",
                    "title": rng.choice(TITLES),
                    "industry": rng.choice(INDUSTRIES),
                    "company_size": rng.choice([10, 50, 250, 1000]),
                    "country": rng.choice(COUNTRIES),
                }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return distinct


def floor_rows(path: Path) -> list[tuple[object, ...]]:
    """The activity rows leadflow would insert, finished in advance (not timed)."""
    lead_ids: dict[str, int] = {}
    ingested = datetime(2026, 10, 1, 9, 0).isoformat(" ", "microseconds")
    rows = []
    with path.open("rb") as handle:
        for line in handle:
            e = json.loads(line)
            lead_id = lead_ids.setdefault(e["email"], len(lead_ids) + 1)
            at = datetime.fromisoformat(e["at"][:-1]).isoformat(" ", "microseconds")
            props = json.dumps(e.get("properties") or {}, separators=(",", ":"))
            rows.append((lead_id, e["type"], at, "bench", e["id"], e["target"], props, ingested))
    return rows


def run_floor(db: Path, rows: list[tuple[object, ...]], batch: int, *, lead_index: bool) -> tuple[float, float]:
    """Seconds and CPU seconds of raw executemany, with leadflow's SQLite settings (page cache included)."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    connection.execute(
        "CREATE TABLE activity (id INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL, type VARCHAR(40) NOT NULL,"
        " occurred_at DATETIME NOT NULL, source VARCHAR(100) NOT NULL, source_id VARCHAR(200) NOT NULL,"
        " target VARCHAR(2000), properties JSON NOT NULL, ingested_at DATETIME NOT NULL)"
    )
    connection.execute("CREATE UNIQUE INDEX uq_activity_source_id ON activity (source, source_id)")
    if lead_index:
        connection.execute("CREATE INDEX ix_activity_lead_occurred ON activity (lead_id, occurred_at)")
    connection.commit()
    sql = (
        "INSERT INTO activity (lead_id, type, occurred_at, source, source_id, target, properties, ingested_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, source_id) DO NOTHING"
    )
    started, cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(rows), batch):
        connection.executemany(sql, rows[at : at + batch])
        connection.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = connection.execute("SELECT COUNT(*) FROM activity").fetchone()[0]
    connection.close()
    if stored != len({r[4] for r in rows}):
        raise SystemExit(f"floor stored {stored} rows, expected one per distinct id")
    return elapsed, cpu


def parse_cost(data: Path) -> tuple[float, float]:
    """CPU seconds of the Python leadflow cannot skip: decoding every line, then validating every record."""
    import orjson

    from leads.records import ActivityParser

    with data.open("rb") as handle:
        lines = handle.readlines()
    parse = ActivityParser(now=END)
    started = time.process_time()
    raws = [orjson.loads(line) for line in lines]
    decoded = time.process_time()
    for raw, line in zip(raws, lines, strict=True):
        parse(raw, raw_size=len(line))
    return decoded - started, time.process_time() - decoded


def run_leadflow(db: Path, data: Path, batch: int) -> tuple[float, float, int]:
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    source = FileActivitySource("bench", data, batch_size=batch)
    started, cpu = time.perf_counter(), time.process_time()
    totals = sync_source(engine=engine, source=source, now=END)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    if totals.quarantined:
        raise SystemExit(f"leadflow quarantined {totals.quarantined} records: {dict(totals.reasons)}")
    return elapsed, cpu, totals.inserted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=50_000, help="records per page (and per floor commit)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data and databases")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        data = folder / "activity.jsonl"
        distinct = generate(data, events=args.events, leads=args.leads, seed=args.seed)
        size_mb = data.stat().st_size / 1e6
        rows = floor_rows(data)
        floor, floor_cpu = run_floor(folder / "floor.db", rows, args.batch_size, lead_index=False)
        floor_indexed, floor_indexed_cpu = run_floor(
            folder / "floor-indexed.db", rows, args.batch_size, lead_index=True
        )
        del rows
        leadflow, leadflow_cpu, inserted = run_leadflow(folder / "leadflow.db", data, args.batch_size)
        decode_cpu, validate_cpu = parse_cost(data)
        if inserted != distinct:
            raise SystemExit(f"leadflow stored {inserted} events, expected {distinct}")

    n = args.events
    figures = {
        "events": n,
        "distinct_events": distinct,
        "leads": args.leads,
        "file_mb": round(size_mb, 1),
        "batch_size": args.batch_size,
        "floor_events_per_s": round(n / floor),
        "floor_with_lead_index_events_per_s": round(n / floor_indexed),
        "leadflow_events_per_s": round(n / leadflow),
        "leadflow_vs_floor": round(floor / leadflow, 3),
        "leadflow_vs_floor_with_lead_index": round(floor_indexed / leadflow, 3),
        "seconds": {
            "floor": round(floor, 2),
            "floor_with_lead_index": round(floor_indexed, 2),
            "leadflow": round(leadflow, 2),
        },
        "cpu_seconds": {
            "floor": round(floor_cpu, 2),
            "floor_with_lead_index": round(floor_indexed_cpu, 2),
            "leadflow": round(leadflow_cpu, 2),
            "decode_lines": round(decode_cpu, 2),
            "validate_records": round(validate_cpu, 2),
        },
        "cpus": os.cpu_count(),
        "load": round(os.getloadavg()[0], 1),
    }
    rows = [
        ("floor (sqlite3 executemany, unique index)", floor),
        ("floor (sqlite3 executemany, leadflow's indexes)", floor_indexed),
        ("leadflow (parse, validate, dedupe, store)", leadflow),
    ]
    print(f"{n:,} events ({distinct:,} distinct) over {args.leads:,} leads, {size_mb:.0f} MB of JSONL")
    print(f"pages of {args.batch_size:,}")
    for label, seconds in rows:
        print(f"  {label:<48} {n / seconds:>10,.0f} events/s  {seconds:6.2f} s")
    print(f"  leadflow / floor: {floor / leadflow:.2f}")
    print(f"  leadflow / floor with leadflow's indexes: {floor_indexed / leadflow:.2f}")
    print(
        f"  CPU seconds: floor {floor_cpu:.2f}, floor with indexes {floor_indexed_cpu:.2f}, leadflow {leadflow_cpu:.2f}"
        f" (of which at least: decoding the lines {decode_cpu:.2f}, validating the records {validate_cpu:.2f})"
    )
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
