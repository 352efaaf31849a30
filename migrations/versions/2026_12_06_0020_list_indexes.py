"""Indexes that keep the payment and refund lists of a user with millions of rows fast.

A list is one user's rows of one mode, newest first (created_at DESC, id DESC): the keyset
cursor `(created_at, id) < (…)` is a range of the index and the order is the index's, so a
page reads `limit + 1` index entries whatever its depth. The status filter gets an index of
its own (a rare status would otherwise mean walking past every other payment). On
PostgreSQL, a GIN index on the metadata as JSONB answers `metadata[KEY]=VALUE` lookups
(containment) without reading the user's payments.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction, so
payments keep being written while a large table is indexed.

Revision ID: list_indexes
Revises: 0007
Create Date: 2026-12-06 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "list_indexes"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEWEST_FIRST = (sa.text("created_at DESC"), sa.text("id DESC"))


def upgrade() -> None:
    postgresql = context.get_bind().dialect.name == "postgresql"
    # CONCURRENTLY cannot run inside a transaction: what came before is committed first.
    with context.get_context().autocommit_block():
        op.create_index(
            "ix_payment_list",
            "payment",
            ["user_id", "livemode", *_NEWEST_FIRST],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_payment_list_status",
            "payment",
            ["user_id", "livemode", "status", *_NEWEST_FIRST],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_refund_list",
            "refund",
            ["user_id", "livemode", *_NEWEST_FIRST],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        if postgresql:
            op.create_index(
                "ix_payment_metadata",
                "payment",
                [sa.text("(CAST(metadata AS JSONB)) jsonb_path_ops")],
                postgresql_using="gin",
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    if context.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_payment_metadata", table_name="payment")
    op.drop_index("ix_refund_list", table_name="refund")
    op.drop_index("ix_payment_list_status", table_name="payment")
    op.drop_index("ix_payment_list", table_name="payment")
