"""ledger_and_simulator_records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:00:01.165506
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("posting_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entry_amount_nonzero")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_ledger_entry_refund_id")),
    )
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entry_account_currency", ["account", "currency"], unique=False
        )
        batch_op.create_index("ix_ledger_entry_payment_id", ["payment_id"], unique=False)
        batch_op.create_index("ix_ledger_entry_posting_id", ["posting_id"], unique=False)

    op.create_table(
        "simulator_charge",
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("processor_reference", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("failure_code", sa.String(length=48), nullable=True),
        sa.Column("failure_message", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_simulator_charge")),
        sa.UniqueConstraint(
            "processor_reference", name=op.f("uq_simulator_charge_processor_reference")
        ),
    )
    op.create_table(
        "simulator_refund",
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("processor_reference", sa.String(length=64), nullable=False),
        sa.Column("charge_reference", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_simulator_refund")),
        sa.UniqueConstraint(
            "processor_reference", name=op.f("uq_simulator_refund_processor_reference")
        ),
    )


def downgrade() -> None:
    op.drop_table("simulator_refund")
    op.drop_table("simulator_charge")
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entry_posting_id")
        batch_op.drop_index("ix_ledger_entry_payment_id")
        batch_op.drop_index("ix_ledger_entry_account_currency")

    op.drop_table("ledger_entry")
