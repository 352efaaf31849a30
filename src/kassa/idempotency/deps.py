"""The claim a keyed request holds, for the route to hand to its service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kassa.idempotency.middleware import STATE
from kassa.idempotency.service import HeldKey


def held_key_of(request: Request) -> HeldKey | None:
    """The claim the request holds (a hot route reads it without a dependency of its own)."""
    held = request.scope.get("state", {}).get(STATE)
    return held if isinstance(held, HeldKey) else None


async def held_key(request: Request) -> HeldKey | None:
    return held_key_of(request)


HeldKeyDep = Annotated[HeldKey | None, Depends(held_key)]
