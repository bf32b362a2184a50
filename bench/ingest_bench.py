"""Ingest speed: JSONL file → SQLite through leadflow, beside raw sqlite3 executemany of the same rows.

    python bench/ingest_bench.py                       # 1,000,000 events over 50,000 leads, then into 5M rows
    python bench/ingest_bench.py --events 200000 --leads 10000 --batch-size 20000 --existing 0

The data is deterministic (a seeded generator): events spread over 90 days in time order, a
profile on each lead's first event, properties on a third of them, and 1% of the events sent
twice (same id), so deduplication is part of the work. Nothing is timed until the file is
written and the databases are created, migrated and (for the second part) filled.

Figures from the same run, into a fresh database:

- floor: raw `sqlite3` `executemany` of the finished activity rows (lead ids resolved, times
  formatted, properties serialised) into a fresh table with the same unique (source, source_id)
  index, committed per batch, with leadflow's SQLite settings for the same work (page size, WAL,
  synchronous=NORMAL, page cache);
- floor with leadflow's indexes: the same, into a table that also has the (lead_id, occurred_at)
  index that leadflow's activity table carries;
- floor, lead index built at the end: the same as the first, then CREATE INDEX (lead_id, occurred_at)
  as leadflow builds it: what leadflow's bulk-load mode does (leads/db/bulkload.py);
- leadflow: `FileActivitySource` + `sync_source` (parse and validate in worker processes, upsert
  leads, insert activity, update the leads' activity times, save the cursor per page) into a
  fresh, migrated workspace database; and the same with parsing in the storing process (workers=0);
- CPU seconds of decoding every line alone, and of decoding and validating every line, in one process.

The fresh-workspace floors and leadflow run `--repeat` times (default 3; the floors first, then
leadflow) and the median run of each counts: the build machine is a shared virtual machine whose
speed moves by several percent from one minute to the next.

Then, unless `--existing 0`, the same file into a workspace that already holds `--existing`
activity rows (a year of history of the same leads): the floor with leadflow's indexes into a copy
of that table (the index kept up to date row by row), the floor that drops the lead index and builds
it again over the whole table, and leadflow, whose bulk-load rule chooses between the two
(`bulk_mode_for_existing` in the JSON says which).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leadflow.connectors.files import FileActivitySource  # noqa: E402
from leadflow.connectors.sync import sync_source  # noqa: E402
from leadflow.leads.db.bulkload import BULK_CACHE_KIB, SORT_CACHE_KIB, SORT_THREADS, worth_dropping  # noqa: E402
from leadflow.leads.db.engine import SQLITE_PAGE_SIZE, make_engine, upgrade  # noqa: E402
from leadflow.leads.ingest.activity_insert import SQLITE_CACHE_KIB  # noqa: E402
from leadflow.leads.work.progress import Progress  # noqa: E402

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


SCHEMA = (
    "CREATE TABLE activity (id INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL, type VARCHAR(40) NOT NULL,"
    " occurred_at DATETIME NOT NULL, source VARCHAR(100) NOT NULL, source_id VARCHAR(200) NOT NULL,"
    " target VARCHAR(2000), properties JSON NOT NULL, ingested_at DATETIME NOT NULL)",
    "CREATE UNIQUE INDEX uq_activity_source_id ON activity (source, source_id)",
)
LEAD_INDEX = "CREATE INDEX IF NOT EXISTS ix_activity_lead_occurred ON activity (lead_id, occurred_at)"


def run_floor(
    db: Path, rows: list[tuple[object, ...]], batch: int, *, lead_index: bool, build_after: bool = False
) -> tuple[float, float]:
    """Seconds and CPU seconds of raw executemany, with the SQLite settings leadflow uses for the same work.

    `db` is created with the activity table (and leadflow's page size) unless it exists (a filled copy);
    `lead_index` keeps the (lead_id, occurred_at) index during the inserts, with ingest's big page cache;
    without it the inserts only append, with the bulk-load cache; `build_after` drops the index first
    and builds it at the end the way leadflow does (a small sort cache, helper threads).
    """
    fresh = not db.exists()
    connection = sqlite3.connect(db)
    if fresh:
        connection.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB if lead_index else BULK_CACHE_KIB}")
    if fresh:
        for statement in SCHEMA:
            connection.execute(statement)
    if lead_index:
        connection.execute(LEAD_INDEX)
    connection.commit()
    before = connection.execute("SELECT COUNT(*) FROM activity").fetchone()[0]
    sql = (
        "INSERT INTO activity (lead_id, type, occurred_at, source, source_id, target, properties, ingested_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, source_id) DO NOTHING"
    )
    started, cpu = time.perf_counter(), time.process_time()
    if build_after:
        connection.execute("DROP INDEX IF EXISTS ix_activity_lead_occurred")
        connection.commit()
    for at in range(0, len(rows), batch):
        connection.executemany(sql, rows[at : at + batch])
        connection.commit()
    if build_after:
        connection.execute(f"PRAGMA cache_size=-{SORT_CACHE_KIB}")
        connection.execute(f"PRAGMA threads={SORT_THREADS}")
        connection.execute(LEAD_INDEX)
        connection.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = connection.execute("SELECT COUNT(*) FROM activity").fetchone()[0] - before
    connection.close()
    if stored != len({r[4] for r in rows}):
        raise SystemExit(f"floor stored {stored} rows, expected one per distinct id")
    return elapsed, cpu


def parse_cost(data: Path) -> tuple[float, float]:
    """CPU seconds of the Python leadflow cannot skip, in one process: decoding every line alone (the
    msgspec decoder the workers use), and decoding and validating every line into its stored row
    (`ActivityParser.json_row`, what the workers run per line).

    Nothing kept and the cycle collector off, as the parse workers run.
    """
    from leadflow.leads.ingest.parser import ActivityParser, _decode_plain

    parse = ActivityParser(now=END)
    enabled = gc.isenabled()
    gc.disable()
    try:
        decode = both = 0.0
        with data.open("rb") as handle:
            while lines := handle.readlines(8 << 20):
                started = time.process_time()
                for line in lines:
                    _decode_plain(line)
                decoded = time.process_time()
                for line in lines:
                    parse.json_row(line)
                both += time.process_time() - decoded
                decode += decoded - started
    finally:
        if enabled:
            gc.enable()
    return decode, both


def run_leadflow(
    db: Path, data: Path, batch: int, *, workers: int | None = None, progress: bool = False
) -> tuple[float, float, float, int]:
    """Seconds, CPU seconds of the storing process and of its parse workers, events stored (with `progress`,
    the run also reports its progress, as under a flow or `leadflow run --progress`, to a listener that
    keeps every update)."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    source = FileActivitySource("bench", data, batch_size=batch, workers=workers)
    children = os.times()
    started, cpu = time.perf_counter(), time.process_time()
    updates: list[tuple[int, int | None, bool]] = []
    told = Progress(lambda *update: updates.append(update)) if progress else None
    totals = sync_source(engine=engine, source=source, now=END, progress=told)
    if told is not None:
        told.finish()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = os.times()
    workers_cpu = (after.children_user + after.children_system) - (children.children_user + children.children_system)
    engine.dispose()
    if totals.quarantined:
        raise SystemExit(f"leadflow quarantined {totals.quarantined} records: {dict(totals.reasons)}")
    return elapsed, cpu, workers_cpu, totals.inserted


def fill_workspace(db: Path, *, existing: int, leads: int, seed: int) -> None:
    """A migrated workspace holding `leads` leads (the bench file's emails) and `existing` activity rows of a
    year before the file's 90 days, with both activity indexes (not timed)."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    rng = random.Random(seed + 1)
    kinds = [k for k, w in TYPES for _ in range(w)]
    stamp = (END - timedelta(days=400)).isoformat(" ", "microseconds")
    start = END - timedelta(days=455)
    step = timedelta(days=365).total_seconds() / max(existing, 1)
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    connection.executemany(
        "INSERT INTO lead (email, fit_score, engagement_score, score, stage, crm_ids, created_at, updated_at)"
        " VALUES (?, 0, 0, 0, 'suspect', '{}', ?, ?)",
        [(f"lead{n:06d}@company{n % 997:03d}.example", stamp, stamp) for n in range(leads)],
    )
    connection.execute("DROP INDEX ix_activity_lead_occurred")
    sql = (
        "INSERT INTO activity (lead_id, type, occurred_at, source, source_id, target, properties, ingested_at)"
        " VALUES (?, ?, ?, 'history', ?, ?, '{}', ?)"
    )
    for first in range(0, existing, 500_000):
        rows = [
            (
                rng.randrange(leads) + 1,
                rng.choice(kinds),
                (start + timedelta(seconds=n * step)).isoformat(" ", "microseconds"),
                f"h-{n:09d}",
                f"/page/{rng.randrange(200)}",
                stamp,
            )
            for n in range(first, min(existing, first + 500_000))
        ]
        connection.executemany(sql, rows)
        connection.commit()
    connection.execute(LEAD_INDEX)
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def copy_db(template: Path, target: Path) -> Path:
    shutil.copyfile(template, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=50_000, help="records per page (and per floor commit)")
    parser.add_argument(
        "--existing", type=int, default=5_000_000, help="activity rows already in the workspace (0: skip that part)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data and databases")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the fresh-workspace floors and leadflow; the median counts"
    )
    parser.add_argument("--progress", action="store_true", help="leadflow's runs report their progress too")
    args = parser.parse_args()
    n, batch = args.events, args.batch_size
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    workers_cpu: dict[str, float] = {}
    runs: dict[str, list[tuple[float, float, float]]] = {}  # every run of a repeated key: seconds, CPU, workers

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        data = folder / "activity.jsonl"
        distinct = generate(data, events=n, leads=args.leads, seed=args.seed)
        size_mb = data.stat().st_size / 1e6
        rows = floor_rows(data)
        template = folder / "filled.db"
        if args.existing:
            fill_workspace(template, existing=args.existing, leads=args.leads, seed=args.seed)

        def record(key: str, figures: tuple[float, float, float]) -> None:
            """Keep a run; a repeated key's figures are those of its median run (by seconds)."""
            runs.setdefault(key, []).append(figures)
            seconds[key], cpu[key], workers_cpu[key] = sorted(runs[key])[(len(runs[key]) - 1) // 2]

        def floor(key: str, db: Path, **kwargs: bool) -> None:
            record(key, (*run_floor(db, rows, batch, **kwargs), 0.0))
            db.unlink()

        def leadflow(key: str, db: Path, workers: int | None = None) -> None:
            elapsed, used, in_workers, inserted = run_leadflow(db, data, batch, workers=workers, progress=args.progress)
            if inserted != distinct:
                raise SystemExit(f"leadflow stored {inserted} events, expected {distinct}")
            record(key, (elapsed, used, in_workers))
            db.unlink()

        for _ in range(args.repeat):
            floor("floor", folder / "floor.db", lead_index=False)
            floor("floor_with_lead_index", folder / "floor-indexed.db", lead_index=True)
            floor("floor_lead_index_built_after", folder / "floor-built.db", lead_index=False, build_after=True)
        if args.existing:
            floor("filled_floor_with_lead_index", copy_db(template, folder / "f1.db"), lead_index=True)
            floor(
                "filled_floor_lead_index_rebuilt",
                copy_db(template, folder / "f2.db"),
                lead_index=True,
                build_after=True,
            )
        rows.clear()  # leadflow's runs do not carry the floors' million tuples around
        for _ in range(args.repeat):
            leadflow("leadflow", folder / "leadflow.db")
        leadflow("leadflow_one_process", folder / "leadflow-1.db", workers=0)
        if args.existing:
            leadflow("filled_leadflow", copy_db(template, folder / "f3.db"))
        cpu["decode_lines"], cpu["decode_and_validate"] = parse_cost(data)

    figures = {
        "events": n,
        "distinct_events": distinct,
        "leads": args.leads,
        "file_mb": round(size_mb, 1),
        "batch_size": batch,
        "existing_rows": args.existing,
        "bulk_mode_for_existing": worth_dropping(existing_rows=args.existing, new_rows=n) if args.existing else None,
        "events_per_s": {k: round(n / v) for k, v in seconds.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "worker_cpu_seconds": {k: round(v, 2) for k, v in workers_cpu.items() if v},
        "leadflow_vs_floor": round(seconds["floor"] / seconds["leadflow"], 3),
        "leadflow_vs_floor_with_lead_index": round(seconds["floor_with_lead_index"] / seconds["leadflow"], 3),
        "leadflow_vs_floor_lead_index_built_after": round(
            seconds["floor_lead_index_built_after"] / seconds["leadflow"], 3
        ),
        "runs": {k: [round(r[0], 2) for r in v] for k, v in runs.items() if len(v) > 1},
        "cpus": os.cpu_count(),
        "load": round(os.getloadavg()[0], 1),
    }
    if args.existing:
        figures["filled_leadflow_vs_floor_with_lead_index"] = round(
            seconds["filled_floor_with_lead_index"] / seconds["filled_leadflow"], 3
        )
    labels = {
        "floor": "floor (sqlite3 executemany, unique index)",
        "floor_with_lead_index": "floor (executemany, leadflow's indexes)",
        "floor_lead_index_built_after": "floor (executemany, lead index built after)",
        "leadflow": "leadflow (parse workers + store)",
        "leadflow_one_process": "leadflow (one process)",
        "filled_floor_with_lead_index": "floor (leadflow's indexes kept up to date)",
        "filled_floor_lead_index_rebuilt": "floor (lead index dropped, rebuilt over all)",
        "filled_leadflow": "leadflow (parse workers + store)",
    }
    print(
        f"{n:,} events ({distinct:,} distinct) over {args.leads:,} leads, {size_mb:.0f} MB of JSONL, pages of {batch:,}"
    )
    if args.repeat > 1:
        print(f"  fresh workspace: the median of {args.repeat} runs each (all runs' seconds in brackets)")
    for key in labels:
        if key == "filled_floor_with_lead_index":
            mode = "drops and rebuilds the lead index" if figures["bulk_mode_for_existing"] else "keeps the lead index"
            print(f"into a workspace already holding {args.existing:,} activity rows (leadflow {mode}):")
        if key in seconds:
            extra = f" + workers {workers_cpu[key]:5.2f}" if workers_cpu.get(key) else ""
            each = f"  [{', '.join(f'{r[0]:.2f}' for r in runs[key])}]" if len(runs.get(key, [])) > 1 else ""
            print(
                f"  {labels[key]:<46} {n / seconds[key]:>9,.0f} events/s  {seconds[key]:6.2f} s"
                f"  CPU {cpu[key]:5.2f}{extra}{each}"
            )
    print(
        f"  leadflow / floor: {figures['leadflow_vs_floor']:.2f};"
        f" leadflow / floor with leadflow's indexes: {figures['leadflow_vs_floor_with_lead_index']:.2f};"
        f" leadflow / floor with the lead index built after: {figures['leadflow_vs_floor_lead_index_built_after']:.2f}"
    )
    if args.existing:
        ratio = figures["filled_leadflow_vs_floor_with_lead_index"]
        print(f"  filled: leadflow / floor with leadflow's indexes: {ratio:.2f}")
    print(
        f"  CPU seconds in one process: decoding the lines {cpu['decode_lines']:.2f}, decoding and validating"
        f" them {cpu['decode_and_validate']:.2f}"
    )
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
