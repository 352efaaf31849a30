"""Every refund query. Gets its session; never commits."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from kassa.refunds.models import Refund


async def get_refund(session: AsyncSession, refund_id: uuid.UUID) -> Refund | None:
    return await session.get(Refund, refund_id, populate_existing=True)
