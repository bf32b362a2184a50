"""Small SQL helpers that hide the few differences between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")


def upsert_insert(session: Session | Connection, table: Any) -> Any:
    """An INSERT that supports ON CONFLICT DO NOTHING / DO UPDATE on the session's (or connection's) database."""
    dialect = (session if isinstance(session, Connection) else session.get_bind()).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


CHUNK = 2000  # values per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`, one statement's worth each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sql_literal(text: str) -> str:
    """A SQL string literal (quotes doubled; NUL, which neither database stores in text, refused)."""
    if "\x00" in text:
        raise ValueError("a source name cannot contain NUL")
    return "'" + text.replace("'", "''") + "'"


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (`Session.execute` types its result as a plain `Result`)."""
    if not isinstance(result, CursorResult):
        raise TypeError("not the result of a statement run on a cursor")
    return result.rowcount
