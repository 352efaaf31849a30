"""The request's actor, for routes whose service records an audit event."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from kassa.auditlog.service import Actor
from kassa.auth.middleware import authenticated


def actor_of(request: Request) -> Actor:
    """Who sends this request: the principal authentication found (its user, and its key's
    id when it came with an API key), the client IP the edge computed and the request id."""
    state = request.scope.get("state", {})
    principal = authenticated(request.scope)
    key_id = getattr(principal, "key_id", None)
    return Actor(
        user_id=principal.user_id if principal is not None else None,
        key_id=key_id if isinstance(key_id, uuid.UUID) else None,
        ip=state.get("client_ip"),
        request_id=state.get("request_id"),
    )


async def request_actor(request: Request) -> Actor:
    return actor_of(request)


RequestActor = Annotated[Actor, Depends(request_actor)]
