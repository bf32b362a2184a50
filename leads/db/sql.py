"""Small SQL helpers that hide the few differences between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert_insert(session: Session | Connection, table: Any) -> Any:
    """An INSERT that supports ON CONFLICT DO NOTHING / DO UPDATE on the session's (or connection's) database."""
    dialect = (session if isinstance(session, Connection) else session.get_bind()).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
