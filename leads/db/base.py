"""What every table shares: the constraint naming convention and the naive-UTC clock."""

from __future__ import annotations

from datetime import UTC, datetime

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
