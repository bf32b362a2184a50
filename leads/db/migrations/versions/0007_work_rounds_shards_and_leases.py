"""Work claims for operations: requalify rounds and their shards, and named leases for single-writer steps.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 11:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "work_lease",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("acquired_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_work_lease")),
    )
    op.create_table(
        "work_round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("open_job", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_round")),
        sa.UniqueConstraint("open_job", name=op.f("uq_work_round_open_job")),
    )
    op.create_index(op.f("ix_work_round_job"), "work_round", ["job"], unique=False)
    op.create_table(
        "work_shard",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("lo", sa.Integer(), nullable=False),
        sa.Column("hi", sa.Integer(), nullable=False),
        sa.Column("ids", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["work_round.id"], name=op.f("fk_work_shard_round_id_work_round")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_shard")),
        sa.UniqueConstraint("round_id", "seq", name="uq_work_shard_round_seq"),
    )
    op.create_index("ix_work_shard_round_status", "work_shard", ["round_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_work_shard_round_status", table_name="work_shard")
    op.drop_table("work_shard")
    op.drop_index(op.f("ix_work_round_job"), table_name="work_round")
    op.drop_table("work_round")
    op.drop_table("work_lease")
