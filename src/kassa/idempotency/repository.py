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
    "token",
    "created_at",
    "lease_until",
    "expires_at",
)
_CLAIM = DriverStatement(
    {d: insert_unless_present(d, _RECORD, "user_id", "key") for d in ("postgresql", "sqlite")},
    _CLAIM_COLUMNS,
)
_HELD = (_RECORD.c.id == bindparam("record")) & (_RECORD.c.token == bindparam("held"))
# The holder's response, unless its claim was taken over or the response is already kept.
_COMPLETE = DriverStatement(
    update(_RECORD).where(_HELD, _RECORD.c.state != "completed"),
    ("record", "held", "state", "response_status", "response_body", "response_type"),
)
# An answer made from a committed effect by a later request (no token: it holds no claim).
_COMPLETE_COMMITTED = DriverStatement(
    update(_RECORD).where(
        _RECORD.c.id == bindparam("record"), _RECORD.c.state == "effect_committed"
    ),
    ("record", "state", "response_status", "response_body", "response_type"),
)
_COMMIT_EFFECT = (
    update(_RECORD)
    .where(_HELD, _RECORD.c.state == "in_flight")
    .values(state="effect_committed", effect=bindparam("effect"), effect_id=bindparam("object"))
)
_DELETE_CLAIM = DriverStatement(delete(_RECORD).where(_HELD, _RECORD.c.state == "in_flight"))
_END_LEASE = DriverStatement(
    update(_RECORD).where(_HELD, _RECORD.c.state == "effect_committed"),
    ("record", "held", "lease_until"),
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
        "token": record.token,
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
    token: uuid.UUID,
) -> bool:
    """Re-claim an in-flight record whose lease ran out (its server died before it committed
    anything) under a new token, which fences the old holder out."""
    result = await session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record_id,
            IdempotencyRecord.state == "in_flight",
            IdempotencyRecord.lease_until == seen_lease,
        )
        .values(lease_until=lease_until, token=token)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def commit_effect(
    db: Executor, record_id: uuid.UUID, token: uuid.UUID, effect: str, effect_id: uuid.UUID
) -> bool:
    """Mark the held claim's effect as committed, in the effect's own transaction; False
    when the claim is no longer this token's (taken over, or already committed)."""
    result = await db.execute(
        _COMMIT_EFFECT,
        {"record": record_id, "held": token, "effect": effect, "object": effect_id},
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def complete(
    db: Executor,
    record_id: uuid.UUID,
    *,
    token: uuid.UUID | None,
    status: int,
    body: bytes,
    content_type: str,
) -> bool:
    """Keep the response; with no token, one made from a committed effect."""
    values = {
        "record": record_id,
        "state": "completed",
        "response_status": status,
        "response_body": body,
        "response_type": content_type,
    }
    if token is None:
        return await _COMPLETE_COMMITTED.rowcount(db, values) == 1
    return await _COMPLETE.rowcount(db, {**values, "held": token}) == 1


async def release(db: Executor, record_id: uuid.UUID, token: uuid.UUID, now: datetime) -> None:
    """Forget the held claim if it committed nothing; if its effect committed, keep it and
    end its lease, so a retry answers from that effect at once."""
    if await _DELETE_CLAIM.rowcount(db, {"record": record_id, "held": token}) == 0:
        await _END_LEASE.rowcount(db, {"record": record_id, "held": token, "lease_until": now})


async def delete_record(db: Executor, record_id: uuid.UUID) -> None:
    await db.execute(_DELETE, {"record": record_id})


async def delete_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
