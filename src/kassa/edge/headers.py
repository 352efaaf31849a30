"""Caps on request headers: how many, and how many bytes in all.

`kassa serve` also caps the whole request head in the HTTP parser (see `server.py`), so a
flood never reaches memory unbounded; this middleware answers the smaller excesses with a
431 problem document that carries the usual response headers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from kassa.errors import problem_response

MAX_HEADER_COUNT = 100
MAX_HEADER_BYTES = 32 * 1024  # names and values together


class HeaderLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_count: int = MAX_HEADER_COUNT,
        max_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", ())
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > self.max_count or size > self.max_bytes:
                response = problem_response(
                    status=431,
                    code="headers_too_large",
                    detail=(
                        f"A request may carry at most {self.max_count} headers "
                        f"of {self.max_bytes} bytes in all."
                    ),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
