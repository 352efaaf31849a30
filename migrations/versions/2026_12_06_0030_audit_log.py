"""The audit log: who did what to which object, append-only.

The database itself refuses to change it: triggers reject every UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE) of `audit_event`, whoever sends them, so no code path of kassa — and
no ordinary SQL session — can rewrite history. (Only a role that may drop the triggers,
the table's owner or a superuser, could; that is a change of schema, not of data.)

Revision ID: audit_log
Revises: list_indexes
Create Date: 2026-12-06 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "audit_log"
down_revision: str | None = "list_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEWEST_FIRST = (sa.text("created_at DESC"), sa.text("id DESC"))

_PG_REFUSE = """
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
_PG_TRIGGER = (
    "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
)
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER audit_event_no_{op_name.lower()} BEFORE {op_name} ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
    for op_name in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Uuid(), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "actor_type IN ('user', 'api_key', 'anonymous')",
            name=op.f("ck_audit_event_actor_type_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_audit_event_user_id_user_account"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index("ix_audit_event_list", "audit_event", ["user_id", *_NEWEST_FIRST])
    op.create_index(
        "ix_audit_event_list_action", "audit_event", ["user_id", "action", *_NEWEST_FIRST]
    )
    if context.get_bind().dialect.name == "postgresql":
        # expand-safe: a function and a trigger on the table this migration creates
        op.execute(_PG_REFUSE)
        # expand-safe: a trigger on the table this migration creates
        op.execute(_PG_TRIGGER)
    else:
        for trigger in _SQLITE_TRIGGERS:
            # expand-safe: a trigger on the table this migration creates
            op.execute(trigger)


def downgrade() -> None:
    if context.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    else:
        for op_name in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_event_no_{op_name}")
    op.drop_index("ix_audit_event_list_action", table_name="audit_event")
    op.drop_index("ix_audit_event_list", table_name="audit_event")
    op.drop_table("audit_event")
