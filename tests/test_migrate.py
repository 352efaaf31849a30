"""Migrations: a fresh database reaches head; a database ahead of this release is left alone."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from kassa.migrate import alembic_config, unknown_revisions, upgrade

USER = uuid.uuid4().hex
TEST_PAYMENT, LIVE_PAYMENT = sorted(uuid.uuid4().hex for _ in range(2))


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_upgrade_reaches_the_single_head(tmp_path: Path) -> None:
    url = _url(tmp_path / "k.db")
    upgrade(url)
    heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    assert len(heads) == 1
    with sqlite3.connect(tmp_path / "k.db") as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == heads[0]
    assert unknown_revisions(url) == []


def test_a_database_ahead_of_this_release_is_left_as_it_is(tmp_path: Path) -> None:
    url = _url(tmp_path / "k.db")
    upgrade(url)
    with sqlite3.connect(tmp_path / "k.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    assert unknown_revisions(url) == ["9999"]
    upgrade(url)  # must not raise: an older image rolled back over a newer schema
    with sqlite3.connect(tmp_path / "k.db") as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == "9999"


def test_ledger_lines_written_before_modes_get_their_payments_mode(tmp_path: Path) -> None:
    """The ledger's mode column is filled from each line's payment as it is added."""
    url = _url(tmp_path / "k.db")
    command.upgrade(alembic_config(url), "checkout_sessions")  # the release before modes
    now = "2026-12-06 09:00:00"
    with sqlite3.connect(tmp_path / "k.db") as db:
        db.execute(
            "INSERT INTO user_account (id, name, email, email_key, password_hash, created_at, "
            "updated_at) VALUES (?, 'M', 'm@example.com', 'm@example.com', 'x', ?, ?)",
            (USER, now, now),
        )
        for payment, live in ((TEST_PAYMENT, 0), (LIVE_PAYMENT, 1)):
            db.execute(
                "INSERT INTO payment (id, user_id, status, amount, amount_refunded, "
                "amount_refund_pending, currency, payment_method, details, metadata, processor, "
                "created_at, updated_at, livemode) VALUES (?, ?, 'completed', 100, 0, 0, 'USD', "
                "'credit_card', '{}', '{}', 'simulator', ?, ?, ?)",
                (payment, USER, now, now, live),
            )
            for account, amount in (("processor_clearing", 100), ("merchant_payable:m", -100)):
                db.execute(
                    "INSERT INTO ledger_entry (id, posting_id, kind, account, amount, currency, "
                    "payment_id, created_at) VALUES (?, ?, 'charge', ?, ?, 'USD', ?, ?)",
                    (uuid.uuid4().hex, payment + "-p", account, amount, payment, now),
                )
    upgrade(url)
    with sqlite3.connect(tmp_path / "k.db") as db:
        modes = db.execute(
            "SELECT payment_id, livemode FROM ledger_entry ORDER BY payment_id"
        ).fetchall()
    assert sorted(set(modes)) == sorted({(TEST_PAYMENT, 0), (LIVE_PAYMENT, 1)})
