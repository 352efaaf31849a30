"""The per-client-IP limit over every `/api` route, then the per-user limit for requests with a
valid login token, with the contract's RateLimit-* headers (those of the tighter limit).

A request with a valid API key counts against its key alone, at its mode's rate
(`KASSA_KEY_RATE_LIMIT_LIVE` / `_TEST`): one count, one Redis call. The per-IP limit stays for
every other request — no token, a refused token or key (so guessing keys spends the IP's
budget), login tokens, and `/api/auth/*` (login and registration) whatever the request
carries."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.auth.middleware import authenticated, authentication
from kassa.edge.pages import render
from kassa.edge.proxy import Network, client_ip, client_key
from kassa.errors import problem_response
from kassa.observability.metrics import RATE_LIMITED
from kassa.ratelimit.limiter import RateLimiter, Verdict

log = structlog.get_logger("kassa.ratelimit")
# Login, registration and the other account routes keep the client's limit whatever key the
# request carries: a key never buys a budget for guessing passwords.
_ACCOUNT_ROUTES = "/api/auth/"


# Forms posted to kassa's pages count against the client's limit too: a checkout page is
# public, and card testing (many cards tried from one place) is what a limit there stops.
_FORM_PAGES = ("/checkout/", "/dashboard/")


def counted(scope: Scope) -> bool:
    """Whether the request counts against the limits: every /api request, and every form
    posted to a page."""
    path: str = scope["path"]
    return path.startswith("/api") or (scope["method"] == "POST" and path.startswith(_FORM_PAGES))


class RateLimitMiddleware:
    """The user limit counts only requests whose token authenticated (an API key found
    unrevoked, or a login token's signature and expiry, checked once by
    `AuthenticationMiddleware` just outside), so a forged or expired token cannot spend a real
    user's budget. A login token's session is checked in the database later in the request;
    when it had ended (the answer is 401), the user's count is given back, so a revoked token
    does not spend its user's budget either (one more Redis call, on that refusal only)."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        trusted: Sequence[Network],
        user_limiter: RateLimiter | None = None,
        key_limiters: tuple[RateLimiter, RateLimiter] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = tuple(trusted)
        self.user_limiter = user_limiter
        self.key_limiters = key_limiters  # (test, live)
        # Each limit's series exists from the start, at 0, so rate() sees the first refusal.
        for named in (limiter, user_limiter, *(key_limiters or ())):
            if named is not None:
                RATE_LIMITED.labels(named.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not counted(scope):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        ip = client_ip(scope, self.trusted)
        state["client_ip"] = ip
        principal = authenticated(scope)
        if (
            principal is not None
            and principal.key_id is not None
            and self.key_limiters
            and not scope["path"].startswith(_ACCOUNT_ROUTES)
        ):
            # A key's request counts against the key alone: one count, one round trip.
            key_limiter = self.key_limiters[1 if principal.livemode else 0]
            verdict = await key_limiter.hit(str(principal.key_id))
            user_verdict = None
        else:
            # The client's limit, then (when it allows) the user's: one round trip for both.
            user_key = None if principal is None else str(principal.user_id)
            verdict, user_verdict = await self.limiter.hit_with(
                client_key(ip), self.user_limiter, user_key
            )
        if (
            verdict.allowed
            and user_verdict is not None
            and (not user_verdict.allowed or user_verdict.remaining < verdict.remaining)
        ):
            verdict = user_verdict
        extra = verdict.headers()
        if not verdict.allowed:
            await self._refuse(verdict, extra, scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
        outcome = authentication(scope)
        if outcome is not None and outcome.session_ended and user_verdict is not None:
            # A login token whose session had ended (checked in the database only after
            # this count): its request was not its user's to count.
            assert principal is not None
            assert self.user_limiter is not None
            await self.user_limiter.give_back(str(principal.user_id))

    async def _refuse(
        self,
        verdict: Verdict,
        extra: list[tuple[bytes, bytes]],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        RATE_LIMITED.labels(verdict.name).inc()
        log.warning("rate_limited", limit=verdict.name, client_ip=scope["state"].get("client_ip"))
        if scope["path"].startswith("/api"):
            response: Response = problem_response(
                status=429,
                code="rate_limited",
                detail="Too many requests; retry after the number of seconds in Retry-After.",
            )
        else:
            response = too_many_page(scope, verdict.reset_after)
        response.headers["Retry-After"] = str(verdict.reset_after)
        response.raw_headers.extend(extra)
        await response(scope, receive, send)


def too_many_page(scope: Scope, seconds: int) -> Response:
    """A form refused by the limits, as a page a person reads (checkout's customer, the
    dashboard's merchant): nothing was done, how long to wait, and the way back."""
    parts = scope["path"].split("/")  # "", "checkout" | "dashboard", …
    checkout = parts[1] == "checkout"
    context = {
        "seconds": seconds,
        "body_class": "checkout" if checkout else "",
        "back": f"/checkout/{quote(parts[2], safe='')}" if checkout else "/dashboard",
        "back_label": "Back to the payment page" if checkout else "Back to the dashboard",
    }
    return render(Request(scope), "too_many.html", context, status_code=429)
