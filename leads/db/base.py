"""What every table shares: the constraint naming convention and the naive-UTC clock."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Table
from sqlalchemy.orm import class_mapper
from sqlmodel import SQLModel

# Named constraints, so later SQLite batch migrations can drop or alter them by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no zone, so every timestamp in the database is UTC without tzinfo.

    Datetime columns say sa_type=DateTime() because recent SQLModel maps a bare `datetime`
    to a timezone-aware type that rejects naive values.
    """
    return datetime.now(UTC).replace(tzinfo=None)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a SQLModel table class, typed (SQLModel sets `__table__` but does not declare it)."""
    table = class_mapper(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table
