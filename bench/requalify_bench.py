"""Requalify at scale: full and incremental runs beside the raw SQL floor, on SQLite or PostgreSQL.

    python bench/requalify_bench.py --leads 1000000 --events 5000000            # SQLite file in bench/results/
    python bench/requalify_bench.py --database-url postgresql://postgres@127.0.0.1/bench_requalify

The floor is one GROUP BY over the same activity rows with the decay expression, fetched to
Python: the least any set-based scorer must do. Each phase runs in its own process so its peak
memory (ru_maxrss) is its own. Figures go to stdout and bench/results/requalify-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
NOW = datetime(2026, 10, 1, 12, 0)
DAYS = 90
TYPES = [
    ("page_view", 0.55), ("email_open", 0.18), ("email_click", 0.06), ("download", 0.05), ("webinar", 0.02),
    ("form_submit", 0.04), ("newsletter_signup", 0.02), ("ad_click", 0.05), ("unsubscribe", 0.005),
    ("email_bounce", 0.005), ("demo_request", 0.004), ("contact_sales", 0.002), ("cart_add", 0.006),
]  # fmt: skip
PAGES = ["/", "/pricing", "/features", "/blog/scoring", "/blog/nurture", "/case-studies/bank", "/careers", "/docs"]
TITLES = ["CEO", "Head of Marketing", "Marketing Manager", "Developer", "Student", "VP Sales", "Analyst", "Director"]
INDUSTRIES = ["software", "finance", "logistics", "manufacturing", "retail", "healthcare", "education"]
COUNTRIES = ["NL", "DK", "DE", "GB", "US", "FR", "BE", "SE"]
DOMAINS = ["gmail.com", "outlook.com"] + [f"company{i}.example" for i in range(200)]


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem / 1024**2, 1),
        "python": platform.python_version(),
    }


def generate(url: str, leads: int, events: int, seed: int) -> None:
    """Leads and activity straight into the migrated schema (raw inserts: the bench data, not the subject)."""
    from sqlalchemy import text

    from leadflow.leads.db.engine import make_engine, upgrade

    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    types, weights = zip(*TYPES, strict=True)
    start = NOW - timedelta(days=DAYS)
    created = start.isoformat(sep=" ")
    lead_rows = [
        (i, f"lead{i}@{rng.choice(DOMAINS)}", rng.choice(TITLES), rng.choice(INDUSTRIES),
         rng.choice([5, 20, 80, 250, 1200, 8000]), rng.choice(COUNTRIES), f"Company {i % 50000}")
        for i in range(1, leads + 1)
    ]  # fmt: skip
    # Heavy-tailed activity per lead: most leads do little, a few do a lot.
    weights_per_lead = [rng.paretovariate(1.6) for _ in range(leads)]
    scale = events / sum(weights_per_lead)
    with engine.begin() as conn:
        dbapi = conn.connection.driver_connection
        cur = dbapi.cursor()
        pg = engine.dialect.name == "postgresql"
        lead_sql = (
            "INSERT INTO lead (id, email, title, industry, company_size, country, company, fit_score, "
            "engagement_score, score, stage, crm_ids, created_at, updated_at) VALUES "
            + (
                "(%s,%s,%s,%s,%s,%s,%s,0,0,0,'suspect','{}',%s,%s)"
                if pg
                else "(?,?,?,?,?,?,?,0,0,0,'suspect','{}',?,?)"
            )
        )
        cur.executemany(lead_sql, [(*row, created, created) for row in lead_rows])
        act_sql = (
            "INSERT INTO activity (lead_id, type, occurred_at, source, source_id, target, properties, ingested_at) "
            + ("VALUES (%s,%s,%s,'bench',%s,%s,'{}',%s)" if pg else "VALUES (?,?,?,'bench',?,?,'{}',?)")
        )
        batch: list[tuple[object, ...]] = []
        n = 0
        for lead_id, weight in enumerate(weights_per_lead, start=1):
            count = min(int(weight * scale + rng.random()), 400)
            for _ in range(count):
                kind = rng.choices(types, weights)[0]
                at = start + timedelta(seconds=rng.randrange(DAYS * 86400))
                target = rng.choice(PAGES) if kind == "page_view" else None
                n += 1
                batch.append((lead_id, kind, at.isoformat(sep=" "), f"b{n}", target, created))
                if len(batch) >= 50_000:
                    cur.executemany(act_sql, batch)
                    batch.clear()
        if batch:
            cur.executemany(act_sql, batch)
        if pg:
            cur.execute("SELECT setval('lead_id_seq', (SELECT max(id) FROM lead))")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def phase(name: str, url: str, config_path: str) -> dict[str, object]:
    """One measured step, in this (fresh) process."""
    from sqlalchemy import func, select, text, update

    from leadflow.leads.config.workspace import load_config
    from leadflow.leads.db.engine import make_engine, session_scope
    from leadflow.leads.db.models import Activity, Lead
    from leadflow.leads.requalify.run import due_lead_ids, make_scorer, requalify_batch

    config = load_config(Path(config_path))
    engine = make_engine(url)
    pg = engine.dialect.name == "postgresql"
    out: dict[str, object] = {"phase": name}
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    if name == "floor":
        rate = math.log(2) / (config.scoring.half_life_days or 30)
        if pg:
            sql = (
                "SELECT lead_id, SUM(exp(-:r * extract(epoch from (:now - occurred_at)) / 86400.0)) "
                "FROM activity WHERE occurred_at <= :now GROUP BY lead_id"
            )
        else:
            sql = (
                "SELECT lead_id, SUM(exp(-:r * (julianday(:now) - julianday(occurred_at)))) "
                "FROM activity WHERE occurred_at <= :now GROUP BY lead_id"
            )
        with engine.connect() as conn:
            rows = conn.execute(text(sql), {"r": rate, "now": NOW if pg else NOW.isoformat(sep=" ")}).all()
        out["rows"] = len(rows)
    elif name in ("full", "full-2proc"):
        # As the requalify flow runs it: a round of 50,000-lead shards claimed from the database, read in
        # one transaction and written in another; with 2 processes, one helper process shares the round.
        from leadflow.leads.requalify.helpers import finish_helpers, start_helpers
        from leadflow.leads.requalify.rounds import JOB, drain_round, plan_round, remember_full_round
        from leadflow.leads.work.claims import close_round, open_round

        workers = 2 if name == "full-2proc" else 1
        os.environ["LEADFLOW_DATABASE_URL"] = url  # what the helper reads, as it would from a workspace
        os.environ["LEADFLOW_CONFIG_PATH"] = str(Path(config_path).resolve())
        run = open_round(
            engine, job=JOB, worker="bench", plan=lambda s: plan_round(s, config, now=NOW, shard_size=50_000, full=True)
        )
        helpers = start_helpers(workers - 1, workspace=None, round_id=run.id, now=NOW, worker="bench")
        mine, _ = drain_round(engine, config, round_id=run.id, now=NOW, worker="bench")
        helped, _ = finish_helpers(helpers)
        close_round(engine, round_id=run.id, worker="bench", on_close=remember_full_round(config, NOW))
        out.update(shards=run.shards, moved=sum(mine.merge(helped).moves.values()), workers=workers)
    elif name == "incremental":
        # 10,000 leads get one new activity each, as ingest would record it (and mark them due).
        with session_scope(engine) as session:
            top = session.execute(select(func.max(Lead.id))).scalar_one()
        picked = random.Random(3).sample(range(1, top + 1), 10_000)
        later = NOW + timedelta(hours=1)
        with session_scope(engine) as session:
            session.execute(
                Activity.__table__.insert(),
                [{"lead_id": i, "type": "page_view", "occurred_at": later, "source": "bench-inc",
                  "source_id": f"inc{i}-{time.time_ns()}", "target": "/pricing", "properties": {},
                  "ingested_at": later} for i in picked],
            )  # fmt: skip
            session.execute(update(Lead).where(Lead.id.in_(picked)).values(rescore_at=later))
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        with session_scope(engine) as session:
            due = due_lead_ids(session, later)
            scorer = make_scorer(session, config)
        for start in range(0, len(due), 5000):
            with session_scope(engine) as session:
                requalify_batch(session=session, config=config, now=later, ids=due[start : start + 5000], scorer=scorer)
        out["due"] = len(due)
    out["seconds"] = round(time.perf_counter() - started, 2)
    # CPU time of this process and its workers: steadier than wall time on a shared machine (SQLite
    # runs in-process; PostgreSQL's own work is in its server processes and not counted here).
    out["cpu_seconds"] = round(_cpu_seconds() - cpu_started, 2)
    out["load"] = round(os.getloadavg()[0], 1)
    out["peak_mib"] = round(_peak_rss_kib() / 1024)
    engine.dispose()
    return out


def _peak_rss_kib() -> int:
    """This process's own peak resident memory. (ru_maxrss would also count the parent's before exec: the
    parent that generated the data is large, and Linux carries its high-water mark into the child.)"""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_phase(name: str, url: str, config: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--database-url", url, "--config", config],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--config", default=str(ROOT / "leads" / "config" / "examples" / "leadflow.yaml"))
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--regenerate", action="store_true", help="Rebuild the data even if a copy exists.")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="PostgreSQL: keep the database if it holds --leads leads, scores reset (SQLite files are always reused).",
    )
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.database_url, args.config)))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{RESULTS / f'requalify-{args.leads}-{args.events}.db'}"
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    fresh = url.startswith("sqlite") and not Path(url.removeprefix("sqlite:///")).exists()
    reuse = backend == "sqlite" or args.reuse
    if reuse and not args.regenerate and not fresh and _reset(url, args.leads):
        print("reusing the data generated earlier (scores, stage moves and added activity reset)", flush=True)
    elif args.regenerate or fresh or backend == "postgresql":
        if url.startswith("sqlite"):
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        else:
            _recreate_pg(url)
        t = time.perf_counter()
        generate(url, args.leads, args.events, args.seed)
        print(f"generated {args.leads} leads / ~{args.events} events in {time.perf_counter() - t:.0f} s", flush=True)
    results = {"machine": machine(), "backend": backend, "leads": args.leads, "events": args.events}
    for name in ("floor", "full", "floor", "full-2proc", "full", "incremental"):
        figures = run_phase(name, url, args.config)
        print(json.dumps(figures), flush=True)
        results.setdefault(name, []).append(figures)  # type: ignore[union-attr]
    summary: dict[str, object] = {}
    for measure in ("seconds", "cpu_seconds"):
        floor = min(r[measure] for r in results["floor"])  # type: ignore[index]
        full = min(r[measure] for r in results["full"])  # type: ignore[index]
        full2 = results["full-2proc"][0][measure]  # type: ignore[index]
        summary[measure] = {
            "floor": floor,
            "full": full,
            "full_2proc": full2,
            "full_over_floor": round(full / floor, 2),
            "full_2proc_over_floor": round(full2 / floor, 2),
            "incremental": results["incremental"][0][measure],  # type: ignore[index]
        }
    results["summary"] = summary
    print(json.dumps(summary))
    (RESULTS / f"requalify-{backend}.json").write_text(json.dumps(results, indent=2))


def _reset(url: str, leads: int) -> bool:
    """Put a database generated earlier back to its unscored state; False when it holds other data."""
    import sqlalchemy as sa

    from leadflow.leads.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.exec_driver_sql("SELECT count(*) FROM lead").scalar_one() != leads:
                return False
            conn.exec_driver_sql("DELETE FROM activity WHERE source = 'bench-inc'")
            conn.exec_driver_sql("DELETE FROM stage_transition")
            conn.exec_driver_sql(
                "UPDATE lead SET fit_score = 0, engagement_score = 0, score = 0, stage = 'suspect', "
                "stage_changed_at = NULL, scored_at = NULL, rescore_at = NULL"
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
        return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _recreate_pg(url: str) -> None:
    import sqlalchemy as sa

    from leadflow.leads.db.engine import normalize_url

    target = normalize_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


if __name__ == "__main__":
    main()
