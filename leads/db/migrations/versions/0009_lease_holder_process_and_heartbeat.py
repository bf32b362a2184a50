"""Lease holders' process and heartbeat: a lease whose holder died is taken over in seconds, not after an hour.

`work_lease` gains the holder's host, pid, pid scope and start time, and its last heartbeat; `expires_at`
now means "last heartbeat plus the staleness limit" rather than "acquired plus a fixed TTL".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("work_lease") as batch:
        batch.add_column(sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pid_scope", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch.add_column(sa.Column("pid_start", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_lease") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("pid_start")
        batch.drop_column("pid_scope")
        batch.drop_column("pid")
        batch.drop_column("host")
