from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    amount: Annotated[
        int | None, Field(gt=0, description="Minor units; omit to refund what is left")
    ] = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class RefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    reason: str | None
    created_at: datetime
