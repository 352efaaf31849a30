from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from kassa.auditlog.service import ActorType, AuditAction


class AuditEventOut(BaseModel):
    id: uuid.UUID
    action: AuditAction
    actor_type: ActorType = Field(description="Who acted: a user, an API key, or nobody known")
    actor_id: uuid.UUID | None = Field(description="The user's or the key's id (never a secret)")
    object_type: str
    object_id: uuid.UUID | None
    livemode: bool | None = Field(description="The object's mode; null for account events")
    ip: str | None = Field(description="The client's IP address, as kassa's edge saw it")
    request_id: str | None = Field(description="The X-Request-ID of the request that acted")
    details: dict[str, str | int] | None = Field(
        description="What else the action says (a refund: payment_id, amount, currency)"
    )
    created_at: datetime


class AuditEventList(BaseModel):
    data: list[AuditEventOut]
    has_more: bool
    next_cursor: str | None
