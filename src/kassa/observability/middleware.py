"""The outermost middleware: request id, access log line, HTTP metrics, response headers.

Every response carries the security headers: nosniff, no framing, no referrer, a
Content-Security-Policy (a route may set its own, as /docs does), `no-store` under /api, and
Strict-Transport-Security when the request came over HTTPS (to kassa itself, or to a trusted
proxy that says so).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import structlog
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.edge.csp import DEFAULT_POLICY
from kassa.edge.proxy import Network, is_https
from kassa.ids import random_hex
from kassa.observability.metrics import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
access_log = structlog.get_logger("kassa.access")

_SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_CSP = b"content-security-policy"
_DEFAULT_CSP = (_CSP, DEFAULT_POLICY.encode())
_API_CACHE = (b"cache-control", b"no-store")
# Two years: browsers keep to HTTPS for this host; subdomains are the operator's to add.
_HSTS = (b"strict-transport-security", b"max-age=63072000")


class RouteNamer:
    """The template of the route that answered, or of the documented route the path names
    when an outer layer answered first (a 429, 413 or 431, an idempotent replay), so those
    are counted under their route, not as `unmatched`."""

    def __init__(self) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        if self._patterns is None:
            app = scope.get("app")
            openapi = getattr(app, "openapi", None)
            templates = list(openapi()["paths"]) if callable(openapi) else []
            self._patterns = [(compile_path(t)[0], t) for t in templates]
        for pattern, template in self._patterns:
            if pattern.match(scope["path"]):
                return template
        return "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return random_hex()


class RequestContextMiddleware:
    """Binds `request_id` to every log line of the request and writes one access line."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        self._route_template = RouteNamer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        is_api = scope["path"].startswith("/api")
        https = is_https(scope, self.trusted)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                headers.extend(_SECURITY_HEADERS)
                if not any(name == _CSP for name, _ in headers):
                    headers.append(_DEFAULT_CSP)
                if is_api:
                    headers = [h for h in headers if h[0] != b"cache-control"]
                    headers.append(_API_CACHE)
                if https:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = self._route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_DURATION.labels(route, method, str(status)).observe(elapsed)
            state = scope.get("state", {})
            access_log.info(
                "request",
                method=method,
                route=route,
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=state.get("user_id"),
                api_key_id=state.get("api_key_id"),
                client_ip=state.get("client_ip"),
            )
            structlog.contextvars.clear_contextvars()
