from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kassa.text import NoControl

EVENTS_DESCRIPTION = (
    'Event types to send, or ["*"] for all: payment.created, payment.processing, '
    "payment.completed, payment.failed, payment.canceled, payment.partially_refunded, "
    "payment.refunded, refund.created"
)


class CreateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2048),
        Field(description="https (http outside production); public addresses only"),
        NoControl,
    ]
    events: Annotated[
        list[Annotated[str, StringConstraints(max_length=64), NoControl]],
        Field(min_length=1, max_length=32, description=EVENTS_DESCRIPTION),
    ]


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    status: Literal["enabled", "disabled"] = Field(
        description="disabled after failing for the whole retry window (about three days)"
    )
    disabled_at: datetime | None
    livemode: bool = Field(description="Whether this is a live-mode object (false: test mode)")
    created_at: datetime


class CreatedWebhookOut(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_…), shown only in this response",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookList(BaseModel):
    data: list[WebhookOut]


class AttemptOut(BaseModel):
    id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int = Field(description="1 for the first attempt of a delivery, then 2, 3, …")
    status: Literal["succeeded", "failed"]
    response_status: int | None = Field(description="The endpoint's HTTP status, if it answered")
    error: str | None
    duration_ms: int
    created_at: datetime


class AttemptList(BaseModel):
    data: list[AttemptOut]
    has_more: bool
    next_cursor: str | None
