"""Shared fixtures: a database URL per backend and a migrated engine on it.

PostgreSQL tests run only when LEADFLOW_TEST_POSTGRES_URL names a server; each test gets
its own throwaway database there so tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from leadflow.leads.db.engine import make_engine, normalize_url, upgrade

# The sandbox has no internet; keep Prefect from phoning home when a test imports it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

POSTGRES_ENV = "LEADFLOW_TEST_POSTGRES_URL"

# Files whose tests take minutes in all (real Prefect servers and workers, a 90 s heartbeat window, flows through
# Prefect, `leadflow` processes, mypy), slowest first, as measured with `--durations` (refresh it now and then).
# xdist hands out whole files (`--dist loadfile`), so these go first: started last, one of them would keep a
# single worker busy long after the others ran out of work. A file not listed here only loses its head start.
SLOW_FILES = (
    "tests/ops/test_prefect_admin.py",
    "tests/cli/test_cli_as_user.py",
    "tests/flows/test_crm_handoff_flow.py",
    "tests/flows/test_template_hold.py",
    "tests/cli/test_cli.py",
    "tests/ops/test_operations.py",
    "tests/flows/test_pipeline.py",
    "tests/leads/test_leases.py",
    "tests/flows/test_parallel_ingest.py",
    "tests/nurture/test_shared_sending.py",
    "tests/flows/test_nurture_dry_run.py",
    "tests/flows/test_handoff_owners.py",
    "tests/flows/test_run_outcomes.py",
    "tests/flows/test_ops_events.py",
    "tests/house/test_types.py",
    "tests/flows/test_delivery_peers.py",
    "tests/leads/test_array_scoring.py",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker more than there are cores (`-n auto`; `--maxprocesses` still caps it).

    Much of the suite waits on real peers (a Prefect server's services, heartbeats, SMTP and
    webhook round trips, `leadflow` processes starting), so a third worker on CI's two cores keeps
    them busy: the suite took 8 min 55 s there against 10 min 29 s with two.
    """
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow files first, then the others by number of tests (xdist's own order); each file's tests in order."""
    counts = Counter(item.nodeid.split("::")[0] for item in items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        return (SLOW_FILES.index(path) if path in SLOW_FILES else len(SLOW_FILES), -counts[path])

    items.sort(key=rank)  # stable: a file's tests keep their order and stay together


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A file-backed SQLite database in the test's own temporary folder."""
    return f"sqlite:///{tmp_path}/leadflow.db"


def _postgres_server() -> URL:
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return normalize_url(server)


@contextmanager
def _postgres_database(template: str | None = None) -> Iterator[str]:
    """A fresh, uniquely named database on the server (a copy of `template` if given), dropped afterwards."""
    server_url = _postgres_server()
    name = f"leadflow_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named database on the server in LEADFLOW_TEST_POSTGRES_URL."""
    with _postgres_database() as url:
        yield url


# Migrating takes about a second on PostgreSQL and a fifth of one on SQLite; hundreds of tests need a migrated
# database. Each test session (each xdist worker) migrates one database per backend, and `engine` gets a copy.


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head, to copy (`CREATE DATABASE ... TEMPLATE`)."""
    with _postgres_database() as url:
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()  # a template must have no connections while it is copied
        yield str(make_url(url).database)


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, to copy."""
    path = tmp_path_factory.mktemp("migrated") / "leadflow.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture
def migrated_postgres_url(_migrated_postgres: str) -> Iterator[str]:
    """Like `postgres_url`, already migrated to head."""
    with _postgres_database(template=_migrated_postgres) as url:
        yield url


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str, _migrated_sqlite: Path) -> str:
    """Like `sqlite_url`, already migrated to head."""
    shutil.copyfile(_migrated_sqlite, str(make_url(sqlite_url).database))
    return sqlite_url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on each backend; looked up lazily so SQLite runs without PostgreSQL.

    A test that uses `engine` gets a database already migrated to head (a copy); others get an empty one."""
    migrated = "migrated_" if "engine" in request.fixturenames else ""
    return request.getfixturevalue(f"{migrated}{request.param}_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (with its own database) for every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def smtp_server() -> Iterator[tuple[Any, int]]:
    """A real SMTP server (aiosmtpd) on loopback that records what it receives."""
    from aiosmtpd.controller import Controller

    from tests.peers import RecordingHandler, free_port

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[Any, str]]:
    """A real HTTP receiver on loopback that verifies Standard Webhooks signatures; yields (state, url)."""
    import threading

    from tests.peers import WebhookServer

    httpd = WebhookServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}/hooks/sales"
    finally:
        httpd.state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With LEADFLOW_FORBID_SKIPS=1 (set by .ci/run) a skipped test fails: CI must run everything."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LEADFLOW_FORBID_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, which must run every test: {reason}"


@pytest.fixture
def twin(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A second, empty database on the same backend as `engine`."""
    url = make_url(db_url)
    admin = None
    if url.get_backend_name() == "sqlite":
        twin_url = f"sqlite:///{tmp_path}/twin.db"
    else:
        name = f"{url.database}_twin"
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        twin_url = url.set(database=name).render_as_string(hide_password=False)
    eng = make_engine(twin_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
