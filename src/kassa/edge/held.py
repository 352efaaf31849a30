"""Each request's lone statements on one pooled connection (see `Database.held_connection`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from kassa.db import Database


class HeldConnectionMiddleware:
    """Runs every HTTP request inside `db.held_connection()`: its statements share one
    checkout, given back when the answer has been sent (or the request failed)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.db.held_connection():
            await self.app(scope, receive, send)
