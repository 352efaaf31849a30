"""The dashboard's sign-in: a cookie holding an access token of an ordinary auth session.

The cookie is HttpOnly, SameSite=Lax, Secure outside development, and scoped to
/dashboard. Each page renews it (the same session, a fresh expiry), so a merchant stays
signed in while working and is signed out after one access-token lifetime idle. Signing out
revokes the session on the server: the cookie stops working everywhere at once, as the
API's logout does for its tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from kassa.auth.service import AuthService, Principal
from kassa.edge.pages import FormGuard

SESSION_COOKIE = "kassa_dashboard"
CSRF_COOKIE = "kassa_dashboard_csrf"
MODE_COOKIE = "kassa_dashboard_mode"
PATH = "/dashboard"


class SignInRequired(Exception):
    """No signed-in merchant: the page sends the browser to the sign-in form."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in merchant as the dashboard's pages see them."""

    principal: Principal
    csrf_nonce: str
    new_nonce: bool

    @property
    def binding(self) -> str:
        return f"dashboard:{self.principal.session_id}"


async def signed_in(request: Request, auth: AuthService, guard: FormGuard) -> Visitor:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    try:
        principal = await auth.authenticate(token)
    except Exception as refused:  # expired, revoked, forged: sign in again
        raise SignInRequired from refused
    live = request.cookies.get(MODE_COOKIE) == "live"
    principal = dataclasses.replace(principal, livemode=live)
    nonce = request.cookies.get(CSRF_COOKIE)
    return Visitor(principal, nonce or guard.new_nonce(), new_nonce=not nonce)


def keep(response: Response, visitor: Visitor, auth: AuthService, guard: FormGuard) -> Response:
    """Renew the sign-in cookie (and set the form nonce when it is new)."""
    guard.set_cookie(response, SESSION_COOKIE, auth.reissue_access(visitor.principal), PATH)
    if visitor.new_nonce:
        guard.set_cookie(response, CSRF_COOKIE, visitor.csrf_nonce, PATH)
    return response


def forget(response: Response) -> Response:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=PATH)
    return response
