"""The route's principal: what `AuthenticationMiddleware` found for the request's bearer token
(the header is read there, once, and nowhere else)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from kassa.auth.middleware import STATE, Authentication
from kassa.auth.service import AuthService, Principal
from kassa.errors import Unauthorized


class _DocumentedBearer(HTTPBearer):
    """Declares the bearer scheme in the OpenAPI document; reads nothing (the middleware has)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


bearer_scheme = _DocumentedBearer(
    scheme_name="HTTPBearer", auto_error=False, description="An access token from /api/auth/login"
)


async def get_auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.container.auth
    return service


async def current_principal(
    request: Request, _documented: Annotated[None, Depends(bearer_scheme)]
) -> Principal:
    outcome = request.scope.get("state", {}).get(STATE)
    if not isinstance(outcome, Authentication):
        raise Unauthorized()  # no bearer token
    if outcome.principal is None:
        assert outcome.error is not None
        raise outcome.error
    return outcome.principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
