"""Authorize now, capture later; void; 3-D Secure: payments learn their capture method, what
was captured, when they were authorized, the step a `processing` payment is at and where its
customer must go; the simulator keeps authorizations and its 3-D Secure challenges.

Revision ID: capture_and_3ds
Revises: audit_log
Create Date: 2026-12-06 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "capture_and_3ds"
down_revision: str | None = "audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = (
    "'pending', 'processing', 'completed', 'failed', 'canceled', 'partially_refunded', 'refunded'"
)
_STATUSES = _OLD_STATUSES + ", 'requires_action', 'requires_capture'"


def upgrade() -> None:
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "capture_method", sa.String(length=16), server_default="automatic", nullable=False
            )
        )
        batch_op.add_column(sa.Column("amount_captured", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("authorized_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("processor_step", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("capture_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("next_action_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("return_url", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_payment_status_authorized_at", ["status", "authorized_at"], unique=False
        )
        batch_op.drop_constraint(op.f("ck_payment_status_valid"), type_="check")
        # expand-safe: a superset of the statuses the running release writes
        batch_op.create_check_constraint("status_valid", f"status IN ({_STATUSES})")

    with op.batch_alter_table("simulator_charge", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("manual", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("amount_captured", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("failure_after_action", sa.String(length=48), nullable=True))

    op.create_table(
        "simulator_challenge",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_simulator_challenge")),
        sa.UniqueConstraint("reference", name=op.f("uq_simulator_challenge_reference")),
    )


def downgrade() -> None:
    op.drop_table("simulator_challenge")
    with op.batch_alter_table("simulator_charge", schema=None) as batch_op:
        batch_op.drop_column("failure_after_action")
        batch_op.drop_column("amount_captured")
        batch_op.drop_column("manual")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_status_valid"), type_="check")
        batch_op.create_check_constraint("status_valid", f"status IN ({_OLD_STATUSES})")
        batch_op.drop_index("ix_payment_status_authorized_at")
        batch_op.drop_column("return_url")
        batch_op.drop_column("next_action_url")
        batch_op.drop_column("capture_amount")
        batch_op.drop_column("processor_step")
        batch_op.drop_column("authorized_at")
        batch_op.drop_column("amount_captured")
        batch_op.drop_column("capture_method")
