from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

TransactionType = Literal["charge", "refund"]
TransactionStatus = Literal["pending", "succeeded", "failed"]


class TransactionOut(BaseModel):
    id: uuid.UUID
    type: TransactionType
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: TransactionStatus
    payment_method: Annotated[
        str, Field(json_schema_extra={"enum": ["credit_card", "debit_card", "digital_wallet"]})
    ]
    livemode: bool = Field(description="Whether this is a live-mode object (false: test mode)")
    created_at: datetime


class TransactionList(BaseModel):
    data: list[TransactionOut]
    has_more: bool
    next_cursor: str | None
