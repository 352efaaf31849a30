"""The database handle: single statements, transactions and snapshots on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, update

from kassa.db import Database, UTCDateTime, create_engine

_METADATA = MetaData()
_ROW = Table(
    "handle_probe",
    _METADATA,
    Column("id", Integer, primary_key=True),
    Column("value", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=True),
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url, pool_size=2))
    async with database.engine.begin() as connection:
        await connection.run_sync(_METADATA.drop_all)
        await connection.run_sync(_METADATA.create_all)
    yield database
    async with database.engine.begin() as connection:
        await connection.run_sync(_METADATA.drop_all)
    await database.dispose()


async def test_a_single_statement_commits_on_its_own(db: Database) -> None:
    assert await db.execute(insert(_ROW), {"id": 1, "value": 10}) == 1
    assert await db.scalar(select(_ROW.c.value).where(_ROW.c.id == 1)) == 10


async def test_rows_come_back_as_mappings_with_aware_utc_datetimes(db: Database) -> None:
    at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    await db.execute(
        insert(_ROW), [{"id": 1, "value": 1, "at": at}, {"id": 2, "value": 2, "at": None}]
    )
    rows = await db.rows(select(_ROW).order_by(_ROW.c.id))
    assert [(row["id"], row["value"]) for row in rows] == [(1, 1), (2, 2)]
    assert rows[0]["at"] == at
    assert rows[0]["at"].tzinfo is not None
    assert await db.first(select(_ROW).where(_ROW.c.id == 3)) is None


async def test_a_transaction_that_raises_writes_nothing(db: Database) -> None:
    async def write_then_fail() -> None:
        async with db.transaction() as tx:
            await tx.execute(insert(_ROW), {"id": 1, "value": 1})
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await db.scalar(select(_ROW.c.id)) is None


async def test_a_conditional_update_reports_the_rows_it_wrote(db: Database) -> None:
    await db.execute(insert(_ROW), {"id": 1, "value": 1})
    async with db.transaction() as tx:
        changed = await tx.rows(
            update(_ROW).where(_ROW.c.value == 1).values(value=2).returning(_ROW.c.id)
        )
        unchanged = await tx.execute(update(_ROW).where(_ROW.c.value == 1).values(value=3))
    assert [row["id"] for row in changed] == [1]
    assert unchanged == 0


async def test_a_snapshot_reads_committed_rows(db: Database) -> None:
    await db.execute(insert(_ROW), {"id": 1, "value": 7})
    async with db.snapshot() as snapshot:
        assert await snapshot.scalar(select(_ROW.c.value)) == 7
