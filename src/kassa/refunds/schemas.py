from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kassa.text import ProseNoCardNumber

if TYPE_CHECKING:
    from kassa.refunds.models import Refund


class RefundRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        # Part of the 1050 of create's example, so /docs can send it as it stands.
        json_schema_extra={"examples": [{"amount": 500, "reason": "One item returned"}]},
    )

    amount: Annotated[
        int | None, Field(gt=0, description="Minor units; omit to refund what is left")
    ] = None
    reason: Annotated[str, StringConstraints(max_length=500), ProseNoCardNumber] | None = None


class RefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    reason: str | None
    livemode: bool = Field(description="Whether this is a live-mode object (false: test mode)")
    created_at: datetime


class RefundList(BaseModel):
    data: list[RefundOut]
    has_more: bool
    next_cursor: str | None


def refund_object(refund: Refund) -> dict[str, Any]:
    """The refund exactly as the API returns it, as JSON-ready data (event payloads)."""
    return RefundOut.model_validate(refund, from_attributes=True).model_dump(mode="json")
