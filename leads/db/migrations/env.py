"""Alembic environment for leadflow.

Called two ways: from `leadflow.leads.db.engine.upgrade()`, which hands over an open connection in
config.attributes["connection"], or from the `alembic` CLI, which names the database with
`-x url=...` or LEADFLOW_DATABASE_URL.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import leadflow.leads.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from leadflow.leads.db.engine import make_engine, normalize_url

config = context.config

# Only the CLI reads an ini file; programmatic runs leave the application's logging alone.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata

CONFIGURE_OPTS: dict[str, Any] = {
    "target_metadata": target_metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    "render_as_batch": True,
    "compare_type": True,
}


def _database_url() -> str:
    """The URL from -x url=..., then LEADFLOW_DATABASE_URL, then sqlalchemy.url in the ini."""
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("LEADFLOW_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("No database URL: pass `-x url=...` to alembic or set LEADFLOW_DATABASE_URL.")
    return url


def _migrate(connection: Connection) -> None:
    """Run the migrations on one connection, with SQLite foreign keys off while they run.

    Batch mode copies a table and drops the original; with foreign_keys=ON that DROP would
    delete or reject the rows pointing at it. The pragma only takes effect outside a
    transaction, so it is skipped when the caller already holds one.
    """
    toggle_fks = connection.dialect.name == "sqlite" and not connection.in_transaction()
    if toggle_fks:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # end the autobegun transaction so Alembic commits its own
    try:
        context.configure(connection=connection, **CONFIGURE_OPTS)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if toggle_fks:
            connection.rollback()  # no-op after success; never leave FKs off in the pool
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_offline() -> None:
    """Emit SQL for `alembic upgrade --sql` without connecting."""
    context.configure(
        url=normalize_url(_database_url()),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONFIGURE_OPTS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection if there is one, else open the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as own_connection:
            _migrate(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
