"""Suppression log (who must not be emailed, why, from where) and lead rescoring columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:11:10.879838

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["lead.id"], name=op.f("fk_suppression_lead_id_lead")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression")),
        sa.UniqueConstraint("email", "scope", name="uq_suppression_email_scope"),
    )
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suppression_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_suppression_lead_id"), ["lead_id"], unique=False)

    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scored_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("rescore_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("predictive_score", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_lead_rescore_at"), ["rescore_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_rescore_at"))
        batch_op.drop_column("predictive_score")
        batch_op.drop_column("rescore_at")
        batch_op.drop_column("scored_at")

    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppression_lead_id"))
        batch_op.drop_index(batch_op.f("ix_suppression_email"))

    op.drop_table("suppression")
