"""Migrations: a fresh database reaches head; a database ahead of this release is left alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory

from kassa.migrate import alembic_config, unknown_revisions, upgrade


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
