"""Nurture delivery at scale: emails per second to a local SMTP server, and a million-lead run's memory.

    python bench/send_bench.py throughput --emails 20000        # SQLite file in bench/results/
    python bench/send_bench.py throughput --database-url postgresql://postgres@127.0.0.1/bench_send
    python bench/send_bench.py memory --leads 1000000 --due 100000 --new 20000

throughput: an aiosmtpd server that counts and discards runs in its own process. In the same run:
  - baseline: raw smtplib `sendmail` of pre-built messages (leadflow's own bytes) over one connection;
  - leadflow: the nurture send path on queued outbox rows: claim, compliance gate (suppression log,
    send window, frequency cap, consent), render the Jinja templates, track links, compose, MAIL/RCPT,
    commit the in-flight mark, DATA, commit the row — over one reused SMTP connection.
memory: a workspace with `--leads` leads enrolled in the example sequence (`--due` of them with a
  step due now) and `--new` prospects not yet enrolled, built with raw inserts; then the real
  nurture flow (Prefect, temporary server) in a child process that reports its peak RSS (ru_maxrss).
Figures go to stdout and bench/results/send-<mode>-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import smtplib
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
NOW = datetime(2026, 11, 25, 10, 0)  # a Wednesday
TIMEZONES = ["Europe/Amsterdam", "Europe/London", "America/New_York", "Asia/Tokyo", None]
COUNTRIES = ["NL", "DE", "GB", "US", "FR", None]


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem / 1024**2, 1),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


# --- the SMTP server, in its own process -------------------------------------------------------------


def serve(port: int) -> None:
    """Count messages and connections, keep nothing; print the counts as JSON on SIGTERM."""
    import asyncio  # noqa: F401  (aiosmtpd's loop)

    from aiosmtpd.controller import Controller

    class Counting:
        messages = 0
        bytes = 0
        peers: set[object] = set()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Counting.messages += 1
            Counting.bytes += len(envelope.original_content or b"")
            Counting.peers.add(session.peer)
            return "250 2.0.0 Ok: queued"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    start_usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_at_start = start_usage.ru_utime + start_usage.ru_stime
    print("ready", flush=True)

    def stop(*_: object) -> None:
        controller.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = round(usage.ru_utime + usage.ru_stime - cpu_at_start, 3)
        counts = {"messages": Counting.messages, "bytes": Counting.bytes, "connections": len(Counting.peers)}
        print(json.dumps({**counts, "cpu_s": cpu}))
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)


class Server:
    def __init__(self) -> None:
        from tests.peers import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--port", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


# --- data ---------------------------------------------------------------------------------------------


def build(url: str, *, leads: int, due: int, new: int) -> None:
    """`leads` prospects enrolled in warm-up (`due` of them with step 0 due now, the rest later), `new`
    prospects not yet enrolled; raw inserts (the bench data, not the subject)."""
    from sqlalchemy import text

    from leadflow.leads.db.engine import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    pg = engine.dialect.name == "postgresql"
    p = "%s" if pg else "?"
    created = (NOW - timedelta(days=30)).isoformat(sep=" ")
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        lead_sql = (
            "INSERT INTO lead (id, email, first_name, company, country, timezone, fit_score, engagement_score, "
            f"score, stage, crm_ids, created_at, updated_at) VALUES ({p},{p},{p},{p},{p},{p},0,0,30,'prospect','{{}}',"
            f"{p},{p})"
        )
        enroll_sql = (
            "INSERT INTO nurture_enrollment (id, lead_id, sequence, cycle, step, status, next_due_at, enrolled_at) "
            f"VALUES ({p},{p},'warm-up',1,0,'active',{p},{p})"
        )
        later = (NOW + timedelta(days=3)).isoformat(sep=" ")
        now = (NOW - timedelta(minutes=1)).isoformat(sep=" ")
        total = leads + new
        for start in range(1, total + 1, 50_000):
            ids = range(start, min(start + 50_000, total + 1))
            cur.executemany(
                lead_sql,
                [
                    (
                        i,
                        f"lead{i}@company{i % 5000}.example",
                        f"Lead{i}",
                        f"Company {i % 5000}",
                        COUNTRIES[i % len(COUNTRIES)],
                        TIMEZONES[i % len(TIMEZONES)],
                        created,
                        created,
                    )
                    for i in ids
                ],  # fmt: skip
            )
            cur.executemany(enroll_sql, [(i, i, now if i <= due else later, created) for i in ids if i <= leads])
        if pg:
            cur.execute("SELECT setval('lead_id_seq', (SELECT max(id) FROM lead))")
            cur.execute("SELECT setval('nurture_enrollment_id_seq', (SELECT max(id) FROM nurture_enrollment))")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def fresh_database(url: str | None, name: str) -> str:
    if url is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import sqlalchemy as sa

    from leadflow.leads.db.engine import normalize_url

    parsed = normalize_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    admin.dispose()
    return parsed.render_as_string(hide_password=False)


# --- throughput ---------------------------------------------------------------------------------------


def baseline(port: int, messages: list[tuple[str, str, bytes]]) -> tuple[float, float]:
    """Raw smtplib sendmail of finished messages over one connection: the transport floor (wall s, CPU s)."""
    started, cpu = time.perf_counter(), time.process_time()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for mail_from, rcpt, data in messages:
            smtp.sendmail(mail_from, [rcpt], data)
    return time.perf_counter() - started, time.process_time() - cpu


def throughput(args: argparse.Namespace) -> dict[str, object]:
    from sqlalchemy import func, select

    from leadflow.connectors.mail import SMTPTransport
    from leadflow.leads.config.compliance import ComplianceConfig, FrequencyCap, SendWindow
    from leadflow.leads.config.workspace import load_config
    from leadflow.leads.db.engine import make_engine, session_scope
    from leadflow.leads.db.models import EmailOutbox, OutboxStatus
    from leadflow.nurture.links import LinkSigner
    from leadflow.nurture.outbox import claim, send_claimed_over, settle_in_flight
    from leadflow.nurture.render import TemplateRenderer
    from leadflow.nurture.steps import queue_due_steps

    url = fresh_database(args.database_url, "send-throughput")
    build(url, leads=args.emails, due=args.emails, new=0)
    engine = make_engine(url)
    config = load_config(ROOT / "leads" / "config" / "examples" / "leadflow.yaml")
    # Every check on: a window that is open now everywhere, a cap nobody reaches yet, consent where given.
    window = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="24:00")
    config = config.model_copy(
        update={
            "compliance": ComplianceConfig(send_window=window, frequency_cap=FrequencyCap(max_emails=3, per_days=7))
        }
    )
    queued = 0
    while batch := _queue(engine, config, queue_due_steps, session_scope):
        queued += batch
    links = LinkSigner(secret_key="bench-secret", public_base_url="https://links.acme.example")
    renderer = TemplateRenderer(ROOT / "templates")

    # The baseline sends leadflow's own bytes for the same recipients, built beforehand (not timed).
    from leadflow.nurture.message import compose
    from leadflow.nurture.render import RenderedEmail

    sample = RenderedEmail(subject="Hello", html="<p>" + "x" * 2000 + "</p>", text="x" * 1200)
    prebuilt = []
    for i in range(1, args.emails + 1):
        env = compose(
            sender=config.sender, to=f"lead{i}@company{i % 5000}.example", rendered=sample,
            idempotency_key=f"b:{i}", unsubscribe_url="https://links.acme.example/u/x",
        )  # fmt: skip
        prebuilt.append((env.mail_from, env.rcpt_to, env.data))

    results: dict[str, object] = {"emails": args.emails, "queued": queued, "backend": engine.dialect.name}
    rounds = []
    for _ in range(args.repeat):
        server = Server()
        base_s, base_cpu = baseline(server.port, prebuilt)
        base_server = server.stop()
        row: dict[str, object] = {
            "baseline_per_s": round(args.emails / base_s),
            "baseline_client_cpu_us": round(base_cpu / args.emails * 1e6),
            "baseline_server_cpu_us": round(base_server["cpu_s"] / args.emails * 1e6),
            "baseline_server": base_server,
        }
        for connections in args.connections:
            with engine.begin() as conn:  # every row back to pending, as queued
                conn.execute(
                    EmailOutbox.__table__.update().values(
                        status="pending", attempts=0, next_attempt_at=NOW, sent_at=None, message_id=None
                    )
                )
            server = Server()
            transports = SMTPTransport("127.0.0.1", server.port, timeout=30, connections=connections).copies()
            started, cpu = time.perf_counter(), time.process_time()
            sent = 0
            with ExitStack() as stack:
                for transport in transports:
                    stack.enter_context(transport)
                with session_scope(engine) as session:
                    settle_in_flight(session=session, now=NOW)
                while True:
                    with session_scope(engine) as session:
                        ids = claim(session=session, now=NOW, limit=args.batch_size)
                    if not ids:
                        break
                    report = send_claimed_over(
                        engine=engine, ids=ids, transports=transports, config=config, renderer=renderer,
                        links=links, now=NOW,
                    )  # fmt: skip
                    sent += report.sent
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            counts = server.stop()
            with engine.connect() as conn:
                marked = conn.execute(
                    select(func.count()).select_from(EmailOutbox).where(EmailOutbox.status == OutboxStatus.sent)
                ).scalar_one()
            assert sent == marked == counts["messages"] == args.emails, (sent, marked, counts)
            row[f"leadflow_{connections}_per_s"] = round(sent / seconds)
            row[f"leadflow_{connections}_sender_cpu_us"] = round(cpu / sent * 1e6)
            row[f"leadflow_{connections}_server_cpu_us"] = round(counts["cpu_s"] / sent * 1e6)
            row[f"leadflow_{connections}_server"] = counts
            row[f"ratio_{connections}"] = round((sent / seconds) / (args.emails / base_s), 2)
        row["load_average_after"] = os.getloadavg()
        print(json.dumps(row), flush=True)
        rounds.append(row)
    results["rounds"] = rounds
    engine.dispose()
    return results


def _queue(engine: Any, config: Any, queue_due_steps: Any, session_scope: Any) -> int:
    with session_scope(engine) as session:
        return int(queue_due_steps(session=session, config=config, now=NOW))


# --- memory ------------------------------------------------------------------------------------------


def run_flow(folder: str) -> None:
    """The nurture flow, in this fresh process; prints its report and this process's peak RSS."""
    from leadflow.flows.nurture import nurture_flow
    from leadflow.flows.params import NurtureParams

    started = time.perf_counter()
    report = nurture_flow(NurtureParams(workspace=folder, as_of=NOW, batch_size=1000))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "enrolled": report.enrolled,
        "queued": report.queued,
        "sent": report.sent,
        "deferred": report.deferred,
        "skipped": report.skipped,
        "failed": report.failed,
    }
    print("RESULT " + json.dumps(summary), flush=True)


def memory(args: argparse.Namespace) -> dict[str, object]:
    from leadflow.cli.workspace_setup import init_workspace

    url = fresh_database(args.database_url, "send-memory")
    started = time.perf_counter()
    build(url, leads=args.leads, due=args.due, new=args.new)
    built_s = time.perf_counter() - started
    folder = RESULTS / "send-memory-ws"
    folder.mkdir(parents=True, exist_ok=True)
    init_workspace(folder)
    server = Server()
    env_file = folder / ".env"
    lines = [
        line
        for line in env_file.read_text().splitlines()
        if not line.startswith(("LEADFLOW_DATABASE_URL", "LEADFLOW_MAIL_URL"))
    ]
    env_file.write_text(
        "\n".join([*lines, f"LEADFLOW_DATABASE_URL={url}", f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{server.port}", ""])
    )
    child = subprocess.run(
        [sys.executable, __file__, "run-flow", "--folder", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    counts = server.stop()
    result_line = next((line for line in child.stdout.splitlines() if line.startswith("RESULT ")), None)
    if result_line is None:
        raise SystemExit(f"the flow failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}")
    result = json.loads(result_line.removeprefix("RESULT "))
    return {
        "leads_enrolled": args.leads,
        "due": args.due,
        "new_prospects": args.new,
        "build_s": round(built_s, 1),
        "flow": result,
        "server": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["throughput", "memory", "serve", "run-flow"])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (a database of that name is recreated)")
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4], help="SMTP connections side by side")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--folder", default="")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port)
        return
    if args.mode == "run-flow":
        run_flow(args.folder)
        return
    result = {"machine": machine(), "mode": args.mode, "at": datetime.now().isoformat(timespec="seconds")}
    result.update(throughput(args) if args.mode == "throughput" else memory(args))
    backend = "postgresql" if args.database_url else "sqlite"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"send-{args.mode}-{backend}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
