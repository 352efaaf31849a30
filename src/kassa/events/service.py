"""Events: the transactional outbox.

`EventService.record` is called inside the business transaction that makes a state change;
the event row and one webhook delivery per subscribed, enabled endpoint commit or roll back
with it, so no event is ever announced for a change that did not happen, and none is lost
for one that did. Delivery itself happens later, in `kassa worker`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CTE, bindparam

from kassa.db import Database, Runner, bound_row, gated_insert, new_id, table_of
from kassa.events import repository
from kassa.events.errors import EventNotFound
from kassa.events.models import Event
from kassa.events.schemas import EVENT_TYPES, EventData, EventOut
from kassa.pagination import Cursor
from kassa.webhooks.service import WebhookService, deliveries_of, queue_for_subscribers

__all__ = ["EVENT_TYPES", "EventPage", "EventService", "event_body"]

_EVENT = table_of(Event)
_INSERT_EVENT = _EVENT.insert()
# PostgreSQL writes the event and queues its webhook deliveries in one statement (a
# data-modifying WITH); elsewhere the event is inserted and then `enqueue` queues them.
_RECORD_AND_QUEUE = queue_for_subscribers(
    _EVENT.insert()
    .values(
        id=bindparam("e_id", type_=_EVENT.c.id.type),
        user_id=bindparam("e_user", type_=_EVENT.c.user_id.type),
        livemode=bindparam("e_live", type_=_EVENT.c.livemode.type),
        type=bindparam("e_type", type_=_EVENT.c.type.type),
        object_id=bindparam("e_object", type_=_EVENT.c.object_id.type),
        data=bindparam("e_data", type_=_EVENT.c.data.type),
        created_at=bindparam("e_at", type_=_EVENT.c.created_at.type),
    )
    .returning(_EVENT.c.id, _EVENT.c.type, _EVENT.c.user_id, _EVENT.c.livemode, _EVENT.c.created_at)
    .cte("recorded_event")
)


@dataclass(frozen=True, slots=True)
class EventPage:
    data: Sequence[Event]
    has_more: bool
    next_cursor: str | None


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        type=event.type,
        livemode=event.livemode,
        created_at=event.created_at,
        data=EventData(object=event.data["object"]),
    )


def event_body(event: Event) -> str:
    """The JSON a webhook delivery POSTs: the Event as GET /api/events shows it."""
    return event_out(event).model_dump_json()


class EventService:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    @staticmethod
    def record_part(gate: CTE) -> list[CTE]:
        """PostgreSQL: `record` inside a statement of several writes, when `gate` returned a
        row (the change happened); its parameters are `record_values`'."""
        recorded = gated_insert(
            _EVENT,
            "e_",
            gate,
            "recorded_event",
            returning=("id", "type", "user_id", "livemode", "created_at"),
        )
        return [recorded, deliveries_of(recorded).cte("queued_deliveries")]

    @staticmethod
    def record_values(
        user_id: uuid.UUID, type_: str, obj: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        """The parameters of `record_part` for the event `record` would write (of the
        object's mode)."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        values = {
            "id": new_id(),
            "user_id": user_id,
            "livemode": bool(obj["livemode"]),
            "type": type_,
            "object_id": uuid.UUID(str(obj["id"])),
            "data": {"object": obj},
            "created_at": now.astimezone(UTC),
        }
        return {**bound_row(_EVENT, "e_", values), "body": event_body(Event(**values))}

    @staticmethod
    async def record(
        db: Runner,
        user_id: uuid.UUID,
        type_: str,
        obj: dict[str, Any],
        now: datetime,
    ) -> Event:
        """Write the event of a state change and queue it for the user's webhooks of the
        object's mode.

        Call inside the transaction that makes the change; `obj` is the Payment or Refund
        exactly as the API returns it (JSON-ready: ids and times as strings, and its
        `livemode`, which the event takes)."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        livemode = bool(obj["livemode"])
        values = {
            "id": new_id(),
            "user_id": user_id,
            "livemode": livemode,
            "type": type_,
            "object_id": uuid.UUID(str(obj["id"])),
            "data": {"object": obj},
            "created_at": now.astimezone(UTC),
        }
        event = Event(**values)
        if db.dialect == "postgresql":
            await db.execute(
                _RECORD_AND_QUEUE,
                {
                    "e_id": values["id"],
                    "e_user": user_id,
                    "e_live": livemode,
                    "e_type": type_,
                    "e_object": values["object_id"],
                    "e_data": values["data"],
                    "e_at": values["created_at"],
                    "body": event_body(event),
                },
            )
            return event
        await db.execute(_INSERT_EVENT, values)
        await WebhookService.enqueue(
            db,
            user_id=user_id,
            livemode=livemode,
            event_id=event.id,
            event_type=type_,
            body=lambda: event_body(event),
            now=now,
        )
        return event

    async def get(self, user_id: uuid.UUID, event_id: uuid.UUID, *, livemode: bool) -> Event:
        event = await repository.get_event(self._db, user_id, event_id, livemode)
        if event is None:
            raise EventNotFound
        return event

    async def list(
        self,
        user_id: uuid.UUID,
        *,
        livemode: bool,
        limit: int,
        cursor: str | None,
        type_: str | None,
    ) -> EventPage:
        after = Cursor.decode(cursor) if cursor else None
        rows = await repository.list_events(
            self._db, user_id, livemode=livemode, limit=limit + 1, cursor=after, type_=type_
        )
        page = rows[:limit]
        has_more = len(rows) > limit
        next_cursor = Cursor(page[-1].created_at, page[-1].id).encode() if has_more else None
        return EventPage(data=page, has_more=has_more, next_cursor=next_cursor)

    async def redeliver(
        self, user_id: uuid.UUID, event_id: uuid.UUID, *, livemode: bool
    ) -> tuple[Event, int]:
        """Queue the event again, due now, for every enabled endpoint of its mode subscribed
        to it; the number of endpoints it was queued for."""
        async with self._db.transaction() as db:
            event = await repository.get_event(db, user_id, event_id, livemode)
            if event is None:
                raise EventNotFound
            queued = await WebhookService.redeliver(
                db,
                user_id=user_id,
                livemode=event.livemode,
                event_id=event.id,
                event_type=event.type,
                body=event_body(event),
                now=self._clock(),
            )
        return event, queued
