"""`kassa ledger verify` as a command: the verdict on stdout, progress on stderr, exit 0 / 1,
and 2 (one line) when the database goes away under it."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from kassa.audit.service import BooksAuditor
from kassa.cli import app
from tests.acceptance.conftest import KASSA, clean_env


def _verify(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KASSA), "ledger", "verify"],
        cwd=workdir,
        env=clean_env(workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_verify_prints_its_verdict_and_shows_progress_on_stderr(tmp_path: Path) -> None:
    done = _verify(tmp_path)  # migrates the embedded default, then checks it
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("ledger OK: 0 postings, 0 payments checked; 0 processor charges")
    assert "ledger verify [" in done.stderr


def test_verify_lists_mismatches_and_exits_1(tmp_path: Path) -> None:
    assert _verify(tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "kassa.db") as db:
        db.execute(
            "INSERT INTO ledger_entry (id, posting_id, kind, account, amount, currency, "
            "payment_id, refund_id, created_at) VALUES (?, ?, 'charge', 'processor_clearing', "
            "5, 'USD', ?, NULL, '2026-01-01 00:00:00')",
            (uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex),
        )
    done = _verify(tmp_path)
    assert done.returncode == 1
    assert "MISMATCH posting" in done.stdout
    assert "sums to 5 USD, not 0" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("ledger FAILED:")


def test_a_database_lost_mid_verify_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(self: BooksAuditor, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionResetError("connection lost"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(BooksAuditor, "verify", lost)
    result = CliRunner().invoke(app, ["ledger", "verify"], env=clean_env(tmp_path))
    assert result.exit_code == 2
    assert "ledger verify could not finish" in result.output
    assert "Traceback" not in result.output
