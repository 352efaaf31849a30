from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kassa.apikeys.service import KeyView
from kassa.auth.service import SCOPES
from kassa.text import NoControlNoCardNumber

Scope = Literal["read", "payments", "refunds", "webhooks", "checkout"]
Mode = Literal["test", "live"]
SCOPES_DESCRIPTION = (
    "What the key may do: `read` (every GET), `payments` (create, process, capture, cancel), "
    "`refunds`, `webhooks` (endpoints and event redelivery), `checkout`. Omit for all of them."
)


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"name": "Shop backend", "mode": "test"}]},
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=100), NoControlNoCardNumber]
    mode: Mode = Field(description="`test` keys act on test objects only, `live` on live ones")
    scopes: Annotated[
        list[Scope] | None, Field(min_length=1, max_length=5, description=SCOPES_DESCRIPTION)
    ] = None


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    mode: Mode
    livemode: bool
    scopes: list[Scope] = Field(description="The scopes the key may use")
    last4: str = Field(description="The secret's last four characters, to tell keys apart")
    created_at: datetime


class CreatedKeyOut(KeyOut):
    secret: str = Field(
        description="The secret key (`sk_test_…` / `sk_live_…`), shown only in this response",
        examples=["sk_test_4eC39HqLyjWDarjtT1zdp7dc4eC39HqLyjWDarjtT1z"],
    )


class KeyList(BaseModel):
    data: list[KeyOut]


def key_out(key: KeyView) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        mode="live" if key.livemode else "test",
        livemode=key.livemode,
        scopes=list(key.scopes if key.scopes is not None else SCOPES),
        last4=key.last4,
        created_at=key.created_at,
    )
