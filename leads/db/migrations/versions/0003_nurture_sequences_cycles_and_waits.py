"""Nurture re-enrollment and event waits: enrollment cycle and waiting_since.

A lead may go through a sequence more than once (a re-enrollment policy), so the unique key of
an enrollment becomes (lead, sequence, cycle); waiting_since is when the previous step was
queued, after which opens, clicks and visits count for waits and branches.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nurture_enrollment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cycle", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(), nullable=True))
        batch_op.drop_constraint("uq_enrollment_lead_sequence", type_="unique")
        batch_op.create_unique_constraint("uq_enrollment_lead_sequence_cycle", ["lead_id", "sequence", "cycle"])
    with op.batch_alter_table("nurture_enrollment", schema=None) as batch_op:
        batch_op.alter_column("cycle", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("nurture_enrollment", schema=None) as batch_op:
        batch_op.drop_constraint("uq_enrollment_lead_sequence_cycle", type_="unique")
        batch_op.create_unique_constraint("uq_enrollment_lead_sequence", ["lead_id", "sequence"])
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("cycle")
