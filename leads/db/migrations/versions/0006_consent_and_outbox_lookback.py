"""Lead consent (for workspaces that require it) and the email outbox's per-lead look-back index.

The outbox statuses in_flight and unconfirmed need no schema change (status is a VARCHAR).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent", sa.Boolean(), nullable=True))
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_email_outbox_lead_sent", ["lead_id", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_email_outbox_lead_sent")
    with op.batch_alter_table("lead", schema=None) as batch_op:
        batch_op.drop_column("consent")
