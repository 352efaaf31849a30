"""Authentication, once per request: the one place the `Authorization` and `Kassa-Mode`
headers are read.

For an `/api` request with `Authorization: Bearer <token>`, the token is verified before the
rate limits — a login token (signature, expiry and a live session) or an API key (`sk_…`,
one indexed lookup of its keyed hash) — and the outcome is kept in the request's state: the
principal, with the mode it acts in, or the error that refused it. The rate limits, the
Idempotency-Key claim and the routes' `CurrentPrincipal` read that outcome and never the
headers.

Modes: a key acts in its own mode; a login token acts in test mode unless the request
carries `Kassa-Mode: live`. `Kassa-Mode` other than `test` or `live`, or naming the other
mode than the key's, is refused (422 `invalid_mode`) rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from kassa.apikeys.service import ApiKeyService, is_api_key
from kassa.auth.errors import InvalidMode
from kassa.auth.service import AuthService, Principal

STATE = "authentication"


@dataclass(frozen=True, slots=True)
class Authentication:
    """What authenticating a request's bearer token gave: a principal, or the error the
    route raises when it needs one (an `Unauthorized`, or the database's failure, which the
    route's error handling answers and logs)."""

    principal: Principal | None = None
    error: Exception | None = None


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


MODE_HEADER = "Kassa-Mode"
_MODES = {"test": False, "live": True}


def requested_mode(scope: Scope) -> bool | None:
    """The mode a `Kassa-Mode` header asks for (True: live), None without one; InvalidMode
    for any other value."""
    for name, value in scope.get("headers", ()):
        if name == b"kassa-mode":
            mode = _MODES.get(value.decode("latin-1").strip().lower())
            if mode is None:
                raise InvalidMode("Kassa-Mode must be `test` or `live`.")
            return mode
    return None


def authenticated(scope: Scope) -> Principal | None:
    """The request's principal, when its bearer token authenticated."""
    outcome = scope.get("state", {}).get(STATE)
    return outcome.principal if isinstance(outcome, Authentication) else None


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, auth: AuthService, keys: ApiKeyService) -> None:
        self.app = app
        self.auth = auth
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            token = bearer_token(scope)
            if token is not None:
                state = scope.setdefault("state", {})
                try:
                    principal = await self._authenticate(scope, token)
                except Exception as error:  # kept for the route that needs a principal
                    state[STATE] = Authentication(error=error)
                else:
                    state[STATE] = Authentication(principal=principal)
                    state["user_id"] = str(principal.user_id)
                    if principal.key_id is not None:
                        state["api_key_id"] = str(principal.key_id)
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, token: str) -> Principal:
        if is_api_key(token):
            principal = await self.keys.authenticate(token)
        else:
            principal = await self.auth.authenticate(token)
        mode = requested_mode(scope)
        if mode is None or mode == principal.livemode:
            return principal
        if principal.is_key:
            raise InvalidMode(
                "Kassa-Mode names the other mode than this API key's; a key acts in its own."
            )
        return principal.with_mode(mode)
