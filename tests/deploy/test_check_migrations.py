"""scripts/check_migrations.py: migrations added since the running release must leave that
release working (expand before contract)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_migrations", ROOT / "scripts/check_migrations.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


cm: Any = _load()

RUNNING_MODELS = {
    "src/kassa/payments/models.py": (
        "class Payment(Base):\n"
        '    __tablename__ = "payment"\n'
        "    legacy_note: Mapped[str | None] = mapped_column(String(40))\n"
        "    amount: Mapped[int] = mapped_column(BigInteger)\n"
    ),
    "src/kassa/refunds/models.py": 'class Refund(Base):\n    __tablename__ = "refund"\n',
}


def migration(body: str) -> str:
    indented = "\n".join("    " + line if line else "" for line in body.strip().splitlines())
    return (
        '"""A migration."""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        'revision = "0099"\n'
        'down_revision = "0098"\n\n\n'
        f"def upgrade() -> None:\n{indented}\n\n\n"
        "def downgrade() -> None:\n"
        '    op.drop_table("anything")\n'
    )


def problems(body: str) -> list[str]:
    found = cm.check({"2027_01_01_0000_x.py": migration(body)}, RUNNING_MODELS)
    return [str(p) for p in found]


@pytest.mark.parametrize(
    "body",
    [
        # a new table, with NOT NULL columns and a unique index of its own
        'op.create_table("payout", sa.Column("id", sa.String(36), nullable=False))\n'
        'op.create_index("ix_payout_id", "payout", ["id"], unique=True)\n'
        'op.create_unique_constraint("uq_payout_id", "payout", ["id"])',
        # a nullable column, and a NOT NULL one with a server default
        'op.add_column("payment", sa.Column("note", sa.String(40), nullable=True))\n'
        'op.add_column("payment", sa.Column("tries", sa.Integer(), server_default="0",'
        " nullable=False))",
        # the same in a batch (SQLite) block, with a plain index
        'with op.batch_alter_table("payment") as batch_op:\n'
        '    batch_op.add_column(sa.Column("memo", sa.Text()))\n'
        '    batch_op.create_index(batch_op.f("ix_payment_memo"), ["memo"], unique=False)',
        # relaxing a column
        'op.alter_column("payment", "amount", nullable=True, existing_type=sa.BigInteger())',
        # contract steps for what the running release no longer uses
        'op.drop_column("payment", "gone_column")\nop.drop_table("old_table")',
        # raw SQL with a reason
        "# expand-safe: a backfill of the new nullable column only\n"
        "op.execute(\"UPDATE payment SET note = '' WHERE note IS NULL\")",
        'op.drop_index("ix_payment_amount", table_name="payment")',
        # a CHECK re-created wider, with a reason
        'with op.batch_alter_table("payment") as batch_op:\n'
        '    batch_op.drop_constraint("ck_payment_status_valid", type_="check")\n'
        "    # expand-safe: a superset of the statuses the running release writes\n"
        "    batch_op.create_check_constraint(\"status_valid\", \"status IN ('a', 'b')\")",
    ],
)
def test_expand_steps_and_safe_contract_steps_pass(body: str) -> None:
    assert problems(body) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'op.add_column("payment", sa.Column("risk", sa.Integer(), nullable=False))',
            "NOT NULL column payment.risk without a server_default",
        ),
        (
            'with op.batch_alter_table("payment") as batch_op:\n'
            '    batch_op.add_column(sa.Column("risk", sa.Integer(), nullable=False))',
            "NOT NULL column payment.risk",
        ),
        (
            'op.drop_column("payment", "legacy_note")',
            "drops payment.legacy_note, which the running release still uses",
        ),
        (
            'with op.batch_alter_table("payment") as batch_op:\n'
            '    batch_op.drop_column("legacy_note")',
            "drops payment.legacy_note",
        ),
        ('op.drop_table("refund")', "drops table 'refund'"),
        ('op.alter_column("payment", "amount", new_column_name="total")', "new_column_name"),
        ('op.alter_column("payment", "amount", type_=sa.Integer())', "type_"),
        ('op.alter_column("payment", "amount", nullable=False)', "nullable"),
        ('op.rename_table("refund", "refunds")', "op.rename_table"),
        ('op.create_unique_constraint("uq", "payment", ["amount"])', "op.create_unique"),
        ('op.create_index("ix", "payment", ["amount"], unique=True)', "a unique index"),
        ('op.create_check_constraint("ck", "payment", "amount > 5")', "op.create_check"),
        ('op.execute("ALTER TABLE payment DROP COLUMN amount")', "raw SQL cannot be checked"),
    ],
)
def test_steps_that_break_the_running_release_fail_naming_file_and_line(
    body: str, message: str
) -> None:
    found = problems(body)
    assert len(found) == 1, found
    assert message in found[0]
    assert found[0].startswith("2027_01_01_0000_x.py:")


def test_a_table_made_earlier_in_the_same_release_may_get_not_null_columns() -> None:
    first = migration('op.create_table("payout", sa.Column("id", sa.String(36)))')
    second = migration('op.add_column("payout", sa.Column("n", sa.Integer(), nullable=False))')
    new = {"2027_01_01_0000_a.py": first, "2027_01_01_0001_b.py": second}
    assert cm.check(new, RUNNING_MODELS) == []


def test_the_repositorys_migrations_pass_against_a_release_before_any_of_them() -> None:
    versions = sorted((ROOT / "migrations/versions").glob("*.py"))
    assert versions
    new = {path.name: path.read_text() for path in versions}
    assert cm.check(new, {}) == []
