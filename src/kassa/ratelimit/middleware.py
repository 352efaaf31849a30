"""Per-client-IP limit over every `/api` route, with the contract's RateLimit-* headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.errors import problem_response
from kassa.observability.metrics import RATE_LIMITED
from kassa.ratelimit.limiter import RateLimiter

log = structlog.get_logger("kassa.ratelimit")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(raw: str) -> tuple[Network, ...]:
    """Comma-separated IPs or CIDR networks."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


def client_ip(scope: Scope, trusted: Sequence[Network]) -> str:
    """The peer, or — when the peer is a trusted proxy — the right-most untrusted hop of
    X-Forwarded-For; a client cannot choose its own key by forging the header."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(","))
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return str(peer)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, trusted: Sequence[Network]) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        ip = client_ip(scope, self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        verdict = await self.limiter.hit("ip", ip)
        extra = verdict.headers()
        if not verdict.allowed:
            RATE_LIMITED.labels("ip").inc()
            log.warning("rate_limited", limit="ip", client_ip=ip)
            response = problem_response(
                status=429,
                code="rate_limited",
                detail="Too many requests; retry after the number of seconds in Retry-After.",
                headers={"Retry-After": str(verdict.reset_after)},
            )
            response.raw_headers.extend(extra)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
