"""A small HTTP proxy in front of localstripe that breaks chosen requests the way a network
and an overloaded Stripe do: a 500 before or after the request was carried out, an answer
that never comes (a read timeout), or a connection dropped after the work was done.

It runs in the test's event loop on a loopback port; rules match a method and a path
pattern and are used up one per matching request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import httpx
from aiohttp import web


class Break(StrEnum):
    ERROR_BEFORE = "error_before"  # 500 without forwarding: nothing happened
    ERROR_AFTER = "error_after"  # forwarded and done, then a 500 instead of the answer
    HANG_AFTER = "hang_after"  # forwarded and done, the answer never comes
    DROP_AFTER = "drop_after"  # forwarded and done, the connection is cut


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    action: Break
    times: int = 1


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    url: str = ""
    client: httpx.AsyncClient | None = None

    def add(self, method: str, path: str, action: Break, times: int = 1) -> None:
        self.rules.append(Rule(method.upper(), re.compile(path), action, times))

    def _take(self, method: str, path: str) -> Break | None:
        for rule in self.rules:
            if rule.times > 0 and rule.method == method and rule.path.fullmatch(path):
                rule.times -= 1
                return rule.action
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = self._take(request.method, request.path)
        if action is Break.ERROR_BEFORE:
            self.seen.append((request.method, request.path, 500))
            return _stripe_500()
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
        }
        assert self.client is not None
        answer = await self.client.request(
            request.method, request.path_qs, content=body, headers=headers
        )
        self.seen.append((request.method, request.path, answer.status_code))
        if action is Break.ERROR_AFTER:
            return _stripe_500()
        if action is Break.HANG_AFTER:
            await asyncio.sleep(60)
        if action is Break.DROP_AFTER:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=502)
        return web.Response(
            status=answer.status_code,
            body=answer.content,
            content_type="application/json",
        )


def _stripe_500() -> web.Response:
    return web.json_response(
        {"error": {"type": "api_error", "message": "An unknown error occurred."}},
        status=500,
        headers={"Stripe-Should-Retry": "true"},
    )


@asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(upstream, client=httpx.AsyncClient(base_url=upstream, timeout=30.0))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy._handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()
        await proxy.client.aclose()
