"""Every idempotency query. Gets its session or connection; never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.db import DriverStatement, Executor, insert_unless_present, table_of
from kassa.idempotency.models import IdempotencyRecord

# Every keyed POST claims, then completes or releases: built once, run as Core.
_RECORD = table_of(IdempotencyRecord)
_CLAIM_COLUMNS = (
    "id",
    "user_id",
    "key",
    "fingerprint",
    "state",
    "created_at",
    "lease_until",
    "expires_at",
)
_CLAIM = DriverStatement(
    {d: insert_unless_present(d, _RECORD, "user_id", "key") for d in ("postgresql", "sqlite")},
    _CLAIM_COLUMNS,
)
_COMPLETE = DriverStatement(
    update(_RECORD).where(_RECORD.c.id == bindparam("record")),
    ("record", "state", "response_status", "response_body", "response_type"),
)
_DELETE = delete(_RECORD).where(_RECORD.c.id == bindparam("record"))


async def insert_claim(db: Executor, record: IdempotencyRecord) -> bool:
    """Insert the claim unless the user already holds the key; True when inserted."""
    values = {
        "id": record.id,
        "user_id": record.user_id,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "state": record.state,
        "created_at": record.created_at,
        "lease_until": record.lease_until,
        "expires_at": record.expires_at,
    }
    return await _CLAIM.rowcount(db, values) == 1


async def get_record(
    session: AsyncSession, user_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    result = await session.execute(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def take_over(
    session: AsyncSession,
    record_id: uuid.UUID,
    *,
    seen_lease: datetime,
    lease_until: datetime,
) -> bool:
    """Re-claim an in-flight record whose lease ran out (its server died mid-request)."""
    result = await session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record_id,
            IdempotencyRecord.state == "in_flight",
            IdempotencyRecord.lease_until == seen_lease,
        )
        .values(lease_until=lease_until)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def complete(
    db: Executor,
    record_id: uuid.UUID,
    *,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    values = {
        "record": record_id,
        "state": "completed",
        "response_status": status,
        "response_body": body,
        "response_type": content_type,
    }
    await _COMPLETE.rowcount(db, values)


async def delete_record(db: Executor, record_id: uuid.UUID) -> None:
    await db.execute(_DELETE, {"record": record_id})


async def delete_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
