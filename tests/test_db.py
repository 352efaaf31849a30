from __future__ import annotations

import asyncio
import gc
import uuid
from pathlib import Path

import pytest

from kassa.db import parse_id


def test_parse_id_accepts_the_canonical_form_in_any_case() -> None:
    ident = uuid.uuid4()
    assert parse_id(str(ident)) == ident
    assert parse_id(str(ident).upper()) == ident


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "123",
        "0" * 32,
        "{" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "00000000-0000-0000-0000-00000000000g",
    ],
)
def test_parse_id_refuses_other_spellings(raw: str) -> None:
    assert parse_id(raw) is None


def test_the_postgresql_pool_keeps_its_size_and_never_opens_more() -> None:
    from kassa.db import create_engine

    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", pool_size=7)
    pool = engine.sync_engine.pool
    assert pool.size() == 7  # type: ignore[attr-defined]
    # No overflow: a connection past the pool would be closed again on return (churn).
    assert pool._max_overflow == 0  # type: ignore[attr-defined]


def test_the_pool_size_comes_from_the_settings() -> None:
    from kassa.container import build_container
    from kassa.settings import load_settings

    settings = load_settings(
        {
            "KASSA_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
            "KASSA_DATABASE_POOL_SIZE": "12",
            "KASSA_JWT_SECRET": "s" * 40,
            "KASSA_VAULT_KEYS": "k1:" + "A" * 43,
        }
    )
    assert settings.database_pool_size == 12
    container = build_container(settings)
    try:
        assert container.engine.sync_engine.pool.size() == 12  # type: ignore[attr-defined]
    finally:
        asyncio.run(container.aclose())
    assert load_settings({}).database_pool_size == 10


@pytest.mark.parametrize("size", ["0", "-1", "1001", "many"])
def test_a_pool_size_outside_1_to_1000_is_refused(size: str) -> None:
    from kassa.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="KASSA_DATABASE_POOL_SIZE"):
        load_settings({"KASSA_DATABASE_POOL_SIZE": size})


def test_the_served_app_freezes_what_start_up_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kassa serve`'s factory moves the start-up heap out of the collector's way."""
    from kassa.app import create_app_from_env

    monkeypatch.setenv("KASSA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    gc.unfreeze()
    try:
        create_app_from_env()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


async def test_a_driver_statement_runs_on_the_driver_only_on_postgresql_in_autocommit(
    tmp_path: Path, postgres_url: str
) -> None:
    """The same rows everywhere; SQLAlchemy sends the statement (its cursor event fires)
    except on a PostgreSQL connection in autocommit, where asyncpg does."""
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, event, literal_column, select

    from kassa.db import DriverStatement, UTCDateTime, create_engine

    statement = select(literal_column("1").label("one")).where(
        bindparam("at", type_=UTCDateTime()) < bindparam("until", type_=UTCDateTime())
    )
    driver = DriverStatement(statement)
    assert "$1::TIMESTAMP WITH TIME ZONE" in driver.sql
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sent_by_sqlalchemy: list[str] = []

    def count(*args: object) -> None:
        sent_by_sqlalchemy.append(str(args[2]))

    engine = create_engine(postgres_url, pool_size=1)
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as db:
            rows = await driver.rows(db, {"at": earlier, "until": later})
            assert [dict(r) for r in rows] == [{"one": 1}]
            assert await driver.rows(db, {"at": later, "until": earlier}) == []
            # The column type's bind processor runs: a naive time is refused, as in Core.
            with pytest.raises(ValueError, match="naive"):
                await driver.rows(db, {"at": later.replace(tzinfo=None), "until": later})
        assert sent_by_sqlalchemy == []
        async with engine.begin() as db:  # a transaction: SQLAlchemy must run it
            rows = await driver.rows(db, {"at": earlier, "until": later})
            assert [dict(r) for r in rows] == [{"one": 1}]
        assert len(sent_by_sqlalchemy) == 1
    finally:
        await engine.dispose()
    sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        async with sqlite.connect() as db:
            rows = await driver.rows(db, {"at": earlier, "until": later})
            assert [dict(r) for r in rows] == [{"one": 1}]
    finally:
        await sqlite.dispose()


async def test_a_connection_a_driver_statement_lost_leaves_the_pool(postgres_url: str) -> None:
    import asyncpg
    from sqlalchemy import literal_column, select

    from kassa.db import DriverStatement, create_engine
    from tests.conftest import PG_ADMIN_DSN

    driver = DriverStatement(select(literal_column("1")))
    engine = create_engine(postgres_url, pool_size=1)
    try:
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as db:
            raw = (await db.get_raw_connection()).driver_connection
            assert raw is not None
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                pid = raw.get_server_pid()
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
                for _ in range(250):  # until the backend has exited (5 s at most)
                    if not await admin.fetchval(gone, pid):
                        break
                    await asyncio.sleep(0.02)
            finally:
                await admin.close()
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await driver.rows(db, {})
            assert db.invalidated
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as db:
            rows = await driver.rows(db, {})  # a new connection took its place
            assert [tuple(r.values()) for r in rows] == [(1,)]
    finally:
        await engine.dispose()
