from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

TransactionType = Literal["charge", "refund"]
TransactionStatus = Literal["pending", "succeeded", "failed"]


class TransactionOut(BaseModel):
    id: uuid.UUID
    type: TransactionType
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: TransactionStatus
    payment_method: str
    created_at: datetime


class TransactionList(BaseModel):
    data: list[TransactionOut]
    has_more: bool
    next_cursor: str | None
