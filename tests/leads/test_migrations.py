"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel, select

import leadflow.leads.db.models  # noqa: F401  (registers the tables)
from leadflow.leads.db.engine import (
    alembic_config,
    current_revision,
    make_engine,
    normalize_url,
    session_scope,
    upgrade,
)
from leadflow.leads.db.models import Activity, Lead, Stage
from tests import factories as make

HEAD = "0009"


def _schema(engine: Engine) -> dict[str, object]:
    """Tables with their columns, indexes, uniques and FKs, for before/after comparisons."""
    inspector = sa.inspect(engine)
    schema: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
            "uniques": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(table)
            ),
        }
    return schema


def test_upgrade_creates_every_table_and_stamps_head(db_url: str) -> None:
    upgrade(db_url)  # from a URL: the database is empty and upgrade owns its engine
    eng = make_engine(db_url)
    try:
        tables = set(sa.inspect(eng).get_table_names())
        assert set(SQLModel.metadata.tables) <= tables
        assert tables - set(SQLModel.metadata.tables) == {"alembic_version"}
        assert current_revision(eng) == HEAD
    finally:
        eng.dispose()


def test_unmigrated_database_has_no_revision(db_url: str) -> None:
    eng = make_engine(db_url)
    try:
        assert current_revision(eng) is None
    finally:
        eng.dispose()


def test_upgrading_twice_is_a_noop(engine: Engine) -> None:
    before = _schema(engine)
    upgrade(engine)
    assert _schema(engine) == before
    assert current_revision(engine) == HEAD
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(engine: Engine) -> None:
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        connection.commit()
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == HEAD


def test_lead_and_activity_round_trip(engine: Engine) -> None:
    occurred = datetime(2024, 5, 1, 12, 30, 15, 123456)
    crm_ids = {"hubspot": "123", "salesforce": {"lead": "00Q1", "tags": [1, "two", None]}}
    with session_scope(engine) as session:
        lead = make.lead("ada@example.com", first_name="Ada", crm_ids=crm_ids, stage=Stage.mql)
        session.add(lead)
        session.flush()
        session.add(
            make.activity(
                lead.id,
                "page_view",
                occurred,
                source="web",
                source_id="evt-1",
                target="https://example.com/pricing",
                properties={"utm": {"source": "newsletter"}},
            )
        )

    with session_scope(engine) as session:
        lead = session.exec(select(Lead).where(Lead.email == "ada@example.com")).one()
        assert lead.crm_ids == crm_ids
        assert lead.stage == Stage.mql
        assert lead.created_at.tzinfo is None
        activity = session.exec(select(Activity).where(Activity.lead_id == lead.id)).one()
        assert activity.occurred_at == occurred
        assert activity.properties == {"utm": {"source": "newsletter"}}
        assert activity.target == "https://example.com/pricing"


def test_activity_source_id_is_unique(engine: Engine) -> None:
    with session_scope(engine) as session:
        lead = make.lead("bob@example.com")
        session.add(lead)
        session.flush()
        lead_id = lead.id

    def activity(source: str, source_id: str) -> Activity:
        return make.activity(lead_id, "email_open", datetime(2024, 1, 1), source=source, source_id=source_id)

    with session_scope(engine) as session:
        session.add(activity("mailer", "m-1"))
        session.add(activity("web", "m-1"))  # same source_id from another source is fine

    with pytest.raises(sa.exc.IntegrityError):
        with session_scope(engine) as session:
            session.add(activity("mailer", "m-1"))

    with session_scope(engine) as session:
        assert len(session.exec(select(Activity)).all()) == 2


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    """SQLite ignores foreign keys unless each connection turns them on."""
    with pytest.raises(sa.exc.IntegrityError):
        with session_scope(engine) as session:
            session.add(make.activity(999_999, "page_view", datetime(2024, 1, 1), source="web", source_id="x"))


# --- leadflow.leads.db.engine helpers -------------------------------------------------------------------------


def test_sqlite_engine_pragmas_and_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "leadflow.db"
    eng = make_engine(f"sqlite:///{path}")
    try:
        with eng.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30000
            assert pragma("synchronous") == 1  # NORMAL
        assert path.exists()
    finally:
        eng.dispose()


def test_a_new_sqlite_workspace_gets_16_kb_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """Bulk writes pay per page written to the WAL; the size can only be chosen before the first table."""
    import sqlite3

    from leadflow.leads.db.engine import SQLITE_PAGE_SIZE

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as raw:  # a workspace made before: SQLite's 4 KB default
        raw.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY)")
    for path, size in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (old, 4096)):
        eng = make_engine(f"sqlite:///{path}")
        try:
            upgrade(eng)
            with eng.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA page_size").scalar() == size
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            eng.dispose()
    assert SQLITE_PAGE_SIZE == 16384


def test_upgrade_leaves_sqlite_foreign_keys_on(sqlite_url: str) -> None:
    """Migrations switch SQLite foreign keys off; pooled connections must get them back."""
    eng = make_engine(sqlite_url)
    try:
        upgrade(eng)
        with eng.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg"),
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h:5432/d", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_normalize_url_uses_psycopg(given: str, driver: str) -> None:
    url = normalize_url(given)
    assert url.drivername == driver
    if driver.startswith("postgresql"):
        assert (url.username, url.password, url.host, url.port, url.database) == ("u", "p", "h", 5432, "d")


def test_session_scope_rolls_back_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            session.add(make.lead("carol@example.com"))
            session.flush()
            raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert session.exec(select(Lead)).all() == []
