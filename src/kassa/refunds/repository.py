"""Every refund query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.refunds.models import Refund


async def get_refund(session: AsyncSession, refund_id: uuid.UUID) -> Refund | None:
    return await session.get(Refund, refund_id, populate_existing=True)


async def list_stale_pending(
    session: AsyncSession, before: datetime, after_id: uuid.UUID | None, limit: int
) -> Sequence[Refund]:
    query = select(Refund).where(Refund.status == "pending", Refund.updated_at < before)
    if after_id is not None:
        query = query.where(Refund.id > after_id)
    result = await session.execute(query.order_by(Refund.id).limit(limit))
    return result.scalars().all()


async def succeeded_totals(session: AsyncSession) -> dict[uuid.UUID, int]:
    result = await session.execute(
        select(Refund.payment_id, func.sum(Refund.amount))
        .where(Refund.status == "succeeded")
        .group_by(Refund.payment_id)
    )
    return {pid: int(total) for pid, total in result}
