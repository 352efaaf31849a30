from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from kassa.auth.deps import CurrentPrincipal
from kassa.events.errors import EventNotFound
from kassa.events.schemas import EventList, EventOut, EventType, RedeliveryOut
from kassa.events.service import EventService, event_out
from kassa.web import guarded, path_id, problem_responses

router = APIRouter(
    prefix="/api/events",
    tags=["events"],
    dependencies=[guarded("webhooks")],
)


async def get_event_service(request: Request) -> EventService:
    service: EventService = request.app.state.container.events
    return service


EventServiceDep = Annotated[EventService, Depends(get_event_service)]
EventId = Annotated[uuid.UUID, path_id("event_id", EventNotFound)]


@router.get(
    "", operation_id="events_list", response_model=EventList, responses=problem_responses(401, 422)
)
async def list_events(
    principal: CurrentPrincipal,
    events: EventServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[EventType | None, Query()] = None,
) -> Any:
    """The caller's events, newest first, with cursor pagination; `type` keeps one kind."""
    page = await events.list(
        principal.user_id, livemode=principal.livemode, limit=limit, cursor=cursor, type_=type
    )
    return EventList(
        data=[event_out(e) for e in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{event_id}",
    operation_id="events_get",
    response_model=EventOut,
    responses=problem_responses(401, 404, 422),
)
async def get_event(event_id: EventId, principal: CurrentPrincipal, events: EventServiceDep) -> Any:
    """One of the caller's events."""
    return event_out(await events.get(principal.user_id, event_id, livemode=principal.livemode))


@router.post(
    "/{event_id}/redeliver",
    operation_id="events_redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RedeliveryOut,
    responses=problem_responses(401, 404, 422),
)
async def redeliver_event(
    event_id: EventId, principal: CurrentPrincipal, events: EventServiceDep
) -> Any:
    """Send the event again, now, to every enabled webhook endpoint subscribed to it (a new
    attempt even if it was delivered before). Delivery happens in `kassa worker`."""
    event, queued = await events.redeliver(principal.user_id, event_id, livemode=principal.livemode)
    return RedeliveryOut(id=event.id, queued=queued)
