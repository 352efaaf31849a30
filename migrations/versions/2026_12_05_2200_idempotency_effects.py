"""An idempotency record names the effect its request committed, in that effect's own
transaction, and the claim token that fences a lapsed claim's holder out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("effect", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("effect_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_column("effect_id")
        batch_op.drop_column("effect")
        batch_op.drop_column("token")
