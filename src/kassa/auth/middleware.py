"""Authentication, once per request: the one place the `Authorization` and `Kassa-Mode`
headers are read.

For an `/api` request with `Authorization: Bearer <token>`, the token is verified before the
rate limits — a login token's signature and expiry (no database), or an API key (`sk_…`,
one indexed lookup of its keyed hash) — and the outcome is kept in the request's state: the
principal, with the mode it acts in, or the error that refused it. The rate limits, the
Idempotency-Key claim and the routes' `CurrentPrincipal` read that outcome and never the
headers.

A login token's session is checked in the database later in the same request, before the
request reads or writes anything else (`kassa.auth.sessions`): the check it owes is kept
beside the principal (`Authentication.owed`) until a route's dependency, or its first
statement, pays it — and, failing those, this middleware before the answer leaves. The rate
limits count such a request against the token's user meanwhile (and give the count back
when the session turns out to have ended).

Modes: a key acts in its own mode; a login token acts in test mode unless the request
carries `Kassa-Mode: live`. `Kassa-Mode` other than `test` or `live`, or naming the other
mode than the key's, is refused (422 `invalid_mode`) rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.apikeys.service import ApiKeyService, is_api_key
from kassa.auth.errors import InvalidMode
from kassa.auth.service import AuthService, Principal
from kassa.auth.sessions import SessionCheck
from kassa.errors import error_response

STATE = "authentication"


# The limits' headers the rate limiter adds to every /api answer.
_LIMIT_HEADERS = b"ratelimit-"


@dataclass(slots=True)
class Authentication:
    """What authenticating a request's bearer token gave: a principal, or the error the
    route raises when it needs one (an `Unauthorized`, or the database's failure, which the
    route's error handling answers and logs) — and, for a login token, the session check
    the request owes (its `live` is None until the database has answered it)."""

    principal: Principal | None = None
    error: Exception | None = None
    owed: SessionCheck | None = None
    auth: AuthService | None = None  # pays `owed`

    async def confirmed(self) -> Principal:
        """The principal, its session check paid now if still unpaid; the refusal otherwise
        (an ended session's before any other)."""
        if self.owed is not None:
            assert self.auth is not None
            await self.auth.confirm(self.owed)
        if self.principal is None:
            assert self.error is not None
            raise self.error
        return self.principal

    async def handed_on(self) -> tuple[Principal, SessionCheck | None]:
        """The principal and its session check, still unpaid unless something paid it; the
        caller's first read must carry it (None: nothing owed). The refusal when there is
        no principal."""
        if self.principal is None:
            await self.confirmed()
        assert self.principal is not None
        if self.owed is not None and self.owed.live:
            return self.principal, None
        return self.principal, self.owed

    @property
    def session_ended(self) -> bool:
        """Whether the database answered that the login token's session had ended."""
        return self.owed is not None and self.owed.live is False


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


def authentication(scope: Scope) -> Authentication | None:
    outcome = scope.get("state", {}).get(STATE)
    return outcome if isinstance(outcome, Authentication) else None


def authenticated(scope: Scope) -> Principal | None:
    """The request's principal, when its bearer token authenticated — a login token's
    session perhaps not checked yet (`confirmed` waits for that)."""
    outcome = scope.get("state", {}).get(STATE)
    return outcome.principal if isinstance(outcome, Authentication) else None


async def confirmed(scope: Scope) -> Principal | None:
    """The request's principal, its session checked; None when it has none, or when the
    check or the token refused it (the route answers that refusal)."""
    outcome = scope.get("state", {}).get(STATE)
    if not isinstance(outcome, Authentication) or outcome.principal is None:
        return None
    try:
        return await outcome.confirmed()
    except Exception:  # the route raises it again, and answers
        return None


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
                outcome = state[STATE] = Authentication(auth=self.auth)
                try:
                    principal, owed = await self._authenticate(scope, token, outcome)
                except Exception as error:  # kept for the route that needs a principal
                    outcome.error = error
                else:
                    outcome.principal, outcome.owed = principal, owed
                    state["user_id"] = str(principal.user_id)
                    if principal.key_id is not None:
                        state["api_key_id"] = str(principal.key_id)
                if outcome.owed is not None:
                    await self.app(scope, receive, self._paid_first(scope, receive, send, outcome))
                    return
        await self.app(scope, receive, send)

    def _paid_first(
        self, scope: Scope, receive: Receive, send: Send, outcome: Authentication
    ) -> Send:
        """`send`, once the request's session check is paid (a statement only when nothing
        paid it yet): an answer to a request whose session has ended is replaced by 401,
        whatever it was (a 422 for its body, a 404 for a malformed id — refusals made before
        the route's first read)."""
        replaced = False

        async def send_paid(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the replaced answer's body
            owed = outcome.owed
            if (
                message["type"] == "http.response.start"
                and owed is not None
                and not owed.live
                and message["status"] != 401
            ):
                try:
                    await self.auth.confirm(owed)
                except Exception as exc:
                    replaced = True
                    refusal = error_response(exc)
                    # The limits' headers the replaced answer carried (every /api answer
                    # carries them), on the refusal in its place.
                    refusal.raw_headers.extend(
                        (name, value)
                        for name, value in message.get("headers", ())
                        if name.lower().startswith(_LIMIT_HEADERS)
                    )
                    await refusal(scope, receive, send)
                    return
            await send(message)

        return send_paid

    async def _authenticate(
        self, scope: Scope, token: str, outcome: Authentication
    ) -> tuple[Principal, SessionCheck | None]:
        """The principal and its owed session check; a refusal of its mode keeps the check
        owed in `outcome` (an ended session is refused first)."""
        owed: SessionCheck | None = None
        if is_api_key(token):
            principal = await self.keys.authenticate(token)
        else:
            principal, owed = self.auth.verify_token(token)
            outcome.owed = owed
        mode = requested_mode(scope)
        if mode is None or mode == principal.livemode:
            return principal, owed
        if principal.is_key:
            raise InvalidMode(
                "Kassa-Mode names the other mode than this API key's; a key acts in its own."
            )
        return principal.with_mode(mode), owed
