"""Engines, sessions and schema migrations for SQLite and PostgreSQL.

Nothing here runs at import time: callers build engines from a URL they own, so tests and
flows can point at different databases in the same process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from leadflow.leads.db.bulkload import restore_lead_index

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# A new SQLite workspace gets 16 KB pages (SQLite's default is 4 KB): WAL mode writes every page it
# commits, then copies it into the database at a checkpoint, a system call or two each time, so bulk
# writes (ingest) pay per page (figures: BENCHMARKS.md, ingest). The setting only takes effect on a
# database without tables, before WAL is switched on; an existing workspace keeps its size.
SQLITE_PAGE_SIZE = 16384

# busy_timeout comes first so that switching to WAL waits for a lock instead of failing.
_SQLITE_PRAGMAS: tuple[str, ...] = (
    "PRAGMA busy_timeout=30000",
    f"PRAGMA page_size={SQLITE_PAGE_SIZE}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def normalize_url(url: str | URL) -> URL:
    """Parse a URL and point bare PostgreSQL URLs at psycopg 3, the only PG driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names, or None for in-memory and URI-style databases."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if str(url.query.get("uri", "")).lower() in ("true", "1"):
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Apply per-connection settings; SQLite forgets them when a connection closes."""
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def make_engine(url: str | URL) -> Engine:
    """Create an engine configured for how leadflow uses the backend.

    SQLite gets WAL, enforced foreign keys and a generous busy timeout because flows write
    from several threads and processes; PostgreSQL gets pre-ping so connections dropped by
    the server between scheduled runs are replaced instead of failing the first query.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(parsed)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return sqlalchemy.create_engine(parsed, pool_pre_ping=True)
    return sqlalchemy.create_engine(parsed)


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations, so no alembic.ini is needed."""
    config = Config()
    # Config values go through configparser interpolation, so a literal % must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


_MIGRATION_LOCK = 7_262_130_003  # a PostgreSQL advisory lock key of leadflow's own


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """On SQLite, processes on one machine migrate one at a time (a lock file beside the database)."""
    path = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
    if path is None:
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Alembic's command API sets module globals while it runs (`context.config`): two flow runs migrating in
# threads of one process at once failed with KeyError('config'). One migration at a time per process.
_UPGRADE_IN_PROCESS = threading.Lock()


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Migrate the database to `revision`, reusing the caller's engine when one is given."""
    if isinstance(engine_or_url, Engine):
        _upgrade(engine_or_url, revision)
        return
    engine = make_engine(engine_or_url)
    try:
        _upgrade(engine, revision)
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> None:
    with _UPGRADE_IN_PROCESS, _sqlite_migration_lock(engine), engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Two workers' first runs may migrate at once; one at a time, the second finds it done.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if revision == "head":  # a bulk ingest killed midway may have left its index missing
            restore_lead_index(connection)
        connection.commit()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is stamped with, or None if it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def session_scope(engine: Engine | Connection) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll back if it raises, always close.

    `engine` may be a connection a caller holds (a bulk ingest's, see `leadflow.leads.db.bulkload.page_connection`).
    """
    session = Session(engine)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
