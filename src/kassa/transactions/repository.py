"""Every transaction query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.pagination import Cursor
from kassa.transactions.models import Transaction


async def list_transactions(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    cursor: Cursor | None,
    type_: str | None,
    status: str | None,
) -> Sequence[Transaction]:
    query = select(Transaction).where(Transaction.user_id == user_id)
    if type_ is not None:
        query = query.where(Transaction.type == type_)
    if status is not None:
        query = query.where(Transaction.status == status)
    if cursor is not None:
        query = query.where(
            or_(
                Transaction.created_at < cursor.created_at,
                and_(Transaction.created_at == cursor.created_at, Transaction.id < cursor.id),
            )
        )
    query = query.order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def set_charge_status(
    session: AsyncSession, payment_id: uuid.UUID, status: str, now: datetime
) -> None:
    await session.execute(
        update(Transaction)
        .where(Transaction.payment_id == payment_id, Transaction.type == "charge")
        .values(status=status, updated_at=now)
    )


async def set_refund_status(
    session: AsyncSession, refund_id: uuid.UUID, status: str, now: datetime
) -> None:
    await session.execute(
        update(Transaction)
        .where(Transaction.refund_id == refund_id)
        .values(status=status, updated_at=now)
    )
