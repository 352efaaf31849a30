from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

EventType = Literal[
    "payment.created",
    "payment.processing",
    "payment.completed",
    "payment.failed",
    "payment.canceled",
    "payment.partially_refunded",
    "payment.refunded",
    "payment.requires_action",
    "payment.requires_capture",
    "payment.captured",
    "refund.created",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class EventData(BaseModel):
    object: dict[str, Any] = Field(
        description="The Payment or Refund exactly as the API returned it when this happened"
    )


class EventOut(BaseModel):
    id: uuid.UUID
    type: EventType
    livemode: bool = Field(description="Whether this is a live-mode object (false: test mode)")
    created_at: datetime
    data: EventData


class EventList(BaseModel):
    data: list[EventOut]
    has_more: bool
    next_cursor: str | None


class RedeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="The event's id")
    queued: int = Field(description="How many webhook endpoints it is queued for")
