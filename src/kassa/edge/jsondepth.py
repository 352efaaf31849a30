"""A cap on how deeply a JSON body nests, checked before anything parses it.

Python's JSON parsers recurse once per level, so a small body of `[[[[…` thousands deep costs
a parser its stack (a 500 instead of an answer). No kassa request nests deeper than a few
levels; anything past `MAX_JSON_DEPTH` is refused with a 400 problem document.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.errors import problem_response

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply `body` nests arrays and objects (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class JsonDepthMiddleware:
    """Reads the body of requests under /api (already capped in size by the body limit outside
    this one), refuses it when it nests too deeply, and hands it on unchanged otherwise."""

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in {"GET", "HEAD", "OPTIONS", "DELETE"}
            or not scope["path"].startswith("/api")
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth(body) > self.max_depth:
            response = problem_response(
                status=400,
                code="json_too_deep",
                detail=f"The JSON body nests deeper than {self.max_depth} levels.",
                title="JSON Too Deep",
            )
            await response(scope, receive, send)
            return
        replay = _replay([{"type": "http.request", "body": body, "more_body": False}], receive)
        await self.app(scope, replay, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
