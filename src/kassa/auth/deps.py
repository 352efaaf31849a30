"""The route's principal: what `AuthenticationMiddleware` found for the request's bearer token
(the header is read there, once, and nowhere else), and what the route lets it do.

- `CurrentPrincipal`: a login token or an API key (both security schemes are declared); a
  login token's session is checked (a statement of its own) before the route runs.
- `LoginPrincipal`: a login token only; an API key gets 403 `forbidden` (key management,
  sessions, password changes).
- `CheckedInFirstRead`: as `CurrentPrincipal`, but the session check is handed to the
  route, whose service carries it in the request's first read (`kassa.auth.sessions`): one
  round trip fewer on the hot routes (creating a payment, reading it, its status, processing
  it, refunding it, the profile).
- `refuse_out_of_scope(request, scope)`: a key without `scope` (or, for a GET, without
  `read`) gets 403 `insufficient_scope` (`kassa.web.guarded` runs it for every /api
  router). Login tokens hold every scope.

Each principal dependency is itself the login token's security scheme (declared in the
OpenAPI document), with the API key's scheme beside it where a key is accepted: one or two
dependencies per route, not three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from kassa.auth.errors import InsufficientScope, LoginTokenRequired
from kassa.auth.middleware import STATE, Authentication
from kassa.auth.service import AuthService, Principal
from kassa.auth.sessions import SessionCheck
from kassa.errors import Unauthorized


class _DocumentedBearer(HTTPBearer):
    """Declares a bearer scheme in the OpenAPI document; reads nothing (the middleware has)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


_LOGIN_SCHEME = "HTTPBearer"
_LOGIN_SCHEME_TEXT = "An access token from /api/auth/login"
api_key_scheme = _DocumentedBearer(
    scheme_name="ApiKey",
    bearerFormat="sk_test_… / sk_live_…",
    auto_error=False,
    description=(
        "A secret API key from POST /api/keys, sent as `Authorization: Bearer sk_…`. "
        "A key acts in its own mode (test or live) and within its scopes."
    ),
)


async def get_auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.container.auth
    return service


def _outcome(request: Request) -> Authentication:
    outcome = request.scope.get("state", {}).get(STATE)
    if not isinstance(outcome, Authentication):
        raise Unauthorized()  # no bearer token
    return outcome


async def confirmed_principal(request: Request) -> Principal:
    """The request's principal, its session checked now if still owed; 401 without one."""
    return await _outcome(request).confirmed()


@dataclass(frozen=True, slots=True)
class Caller:
    """A route's principal and the session check its first statement must carry (None:
    nothing owed — an API key, or a check already paid)."""

    principal: Principal
    session: SessionCheck | None


# Each principal dependency is itself the login token's security scheme (so the OpenAPI
# document declares it, and a request solves one dependency, not one per scheme); those that
# also take an API key declare that scheme beside it.


class _LoginToken(HTTPBearer):
    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await _outcome(request).confirmed()
        if principal.is_key:
            raise LoginTokenRequired
        return principal


class _TokenOrKey(HTTPBearer):
    async def __call__(  # type: ignore[override]
        self, request: Request, _key: Annotated[None, Depends(api_key_scheme)]
    ) -> Principal:
        return await _outcome(request).confirmed()


class _TokenOrKeyCheckedInFirstRead(HTTPBearer):
    async def __call__(  # type: ignore[override]
        self, request: Request, _key: Annotated[None, Depends(api_key_scheme)]
    ) -> Caller:
        principal, owed = await _outcome(request).handed_on()
        return Caller(principal, owed)


current_principal = _TokenOrKey(
    scheme_name=_LOGIN_SCHEME, auto_error=False, description=_LOGIN_SCHEME_TEXT
)
login_principal = _LoginToken(
    scheme_name=_LOGIN_SCHEME, auto_error=False, description=_LOGIN_SCHEME_TEXT
)
caller_checked_in_first_read = _TokenOrKeyCheckedInFirstRead(
    scheme_name=_LOGIN_SCHEME, auto_error=False, description=_LOGIN_SCHEME_TEXT
)


_READS = frozenset({"GET", "HEAD"})


def refuse_out_of_scope(request: Request, scope: str) -> None:
    """403 `insufficient_scope` for a key without `scope` (for a GET, without `read`); no
    principal: nothing to refuse here (the route answers 401)."""
    outcome = request.scope.get("state", {}).get(STATE)
    principal = outcome.principal if isinstance(outcome, Authentication) else None
    if principal is None:
        return
    needed = "read" if request.method in _READS else scope
    if needed not in principal.scopes:
        raise InsufficientScope(needed)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CheckedInFirstRead = Annotated[Caller, Depends(caller_checked_in_first_read)]
LoginPrincipal = Annotated[Principal, Depends(login_principal)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
