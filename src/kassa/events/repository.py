"""Every event query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.events.models import Event
from kassa.pagination import Cursor


async def get_event(session: AsyncSession, user_id: uuid.UUID, event_id: uuid.UUID) -> Event | None:
    result = await session.execute(
        select(Event).where(Event.id == event_id, Event.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def list_events(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    cursor: Cursor | None,
    type_: str | None,
) -> Sequence[Event]:
    query = select(Event).where(Event.user_id == user_id)
    if type_ is not None:
        query = query.where(Event.type == type_)
    if cursor is not None:
        query = query.where(
            or_(
                Event.created_at < cursor.created_at,
                and_(Event.created_at == cursor.created_at, Event.id < cursor.id),
            )
        )
    query = query.order_by(Event.created_at.desc(), Event.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()
