"""Ledger lines carry their mode: test money and live money in separate books.

Revision ID: ledger_livemode
Revises: checkout_sessions
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "ledger_livemode"
down_revision: str | None = "checkout_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a line the running release writes during the upgrade has no mode yet (it is
    # its payment's, and `kassa ledger verify` reads it so).
    op.add_column("ledger_entry", sa.Column("livemode", sa.Boolean(), nullable=True))
    # expand-safe: fills the new column only, from each line's payment (the running release never reads it)
    op.execute(
        "UPDATE ledger_entry SET livemode = "
        "(SELECT payment.livemode FROM payment WHERE payment.id = ledger_entry.payment_id)"
    )
    # Built CONCURRENTLY on PostgreSQL (outside the migration's transaction, which commits
    # first), so the running release's postings are not held up while a large ledger is
    # indexed.
    with context.get_context().autocommit_block():
        op.create_index(
            "ix_ledger_entry_livemode_account_currency",
            "ledger_entry",
            ["livemode", "account", "currency"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_ledger_entry_livemode_account_currency", table_name="ledger_entry")
    op.drop_column("ledger_entry", "livemode")
