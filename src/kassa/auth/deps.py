"""Authentication dependency: `Authorization: Bearer <access token>` → `Principal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from kassa.auth.service import AuthService, Principal
from kassa.errors import Unauthorized


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, for middleware that runs
    before FastAPI's dependencies (rate limits, idempotency)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /api/auth/login")


async def get_auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.container.auth
    return service


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    auth: Annotated[AuthService, Depends(get_auth_service)],
) -> Principal:
    known = request.scope.get("state", {}).get("principal")
    if isinstance(known, Principal):
        principal = known  # already authenticated by the idempotency middleware
    elif credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    else:
        principal = await auth.authenticate(credentials.credentials)
    request.scope.setdefault("state", {})["user_id"] = str(principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
