"""Every event query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, bindparam, or_, select

from kassa.db import Runner, record_of, table_of
from kassa.events.models import Event
from kassa.pagination import Cursor

_EVENT = table_of(Event)
_GET = select(_EVENT).where(
    _EVENT.c.id == bindparam("event"),
    _EVENT.c.user_id == bindparam("owner"),
    _EVENT.c.livemode == bindparam("livemode"),
)


async def get_event(
    db: Runner, user_id: uuid.UUID, event_id: uuid.UUID, livemode: bool
) -> Event | None:
    row = await db.first(_GET, {"event": event_id, "owner": user_id, "livemode": livemode})
    return None if row is None else record_of(Event, row)


async def list_events(
    db: Runner,
    user_id: uuid.UUID,
    *,
    livemode: bool,
    limit: int,
    cursor: Cursor | None,
    type_: str | None,
) -> Sequence[Event]:
    e = _EVENT.c
    query = select(_EVENT).where(e.user_id == user_id, e.livemode == livemode)
    if type_ is not None:
        query = query.where(e.type == type_)
    if cursor is not None:
        query = query.where(
            or_(
                e.created_at < cursor.created_at,
                and_(e.created_at == cursor.created_at, e.id < cursor.id),
            )
        )
    query = query.order_by(e.created_at.desc(), e.id.desc()).limit(limit)
    return [record_of(Event, row) for row in await db.rows(query)]
