"""The claim a keyed request holds, for the route to hand to its service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kassa.idempotency.middleware import STATE
from kassa.idempotency.service import HeldKey


async def held_key(request: Request) -> HeldKey | None:
    held = getattr(request.state, STATE, None)
    return held if isinstance(held, HeldKey) else None


HeldKeyDep = Annotated[HeldKey | None, Depends(held_key)]
