"""Authentication, once per request: the one place the `Authorization` header is read.

For an `/api` request with `Authorization: Bearer <token>`, the token is verified (signature,
expiry and a live session) before the rate limits, and the outcome is kept in the request's
state: the principal, or the error that refused it. The user rate limit, the Idempotency-Key
claim and the routes' `CurrentPrincipal` read that outcome and never the header.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

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


def authenticated(scope: Scope) -> Principal | None:
    """The request's principal, when its bearer token authenticated."""
    outcome = scope.get("state", {}).get(STATE)
    return outcome.principal if isinstance(outcome, Authentication) else None


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, auth: AuthService) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            token = bearer_token(scope)
            if token is not None:
                state = scope.setdefault("state", {})
                try:
                    principal = await self.auth.authenticate(token)
                except Exception as error:  # kept for the route that needs a principal
                    state[STATE] = Authentication(error=error)
                else:
                    state[STATE] = Authentication(principal=principal)
                    state["user_id"] = str(principal.user_id)
        await self.app(scope, receive, send)
