"""What a JSON body must be before anything parses it for a route: not nested too deeply,
and without a repeated key.

Python's JSON parsers recurse once per level, so a small body of `[[[[…` thousands deep costs
a parser its stack (a 500 instead of an answer). No kassa request nests deeper than a few
levels; anything past `MAX_JSON_DEPTH` is refused with a 400 problem document (`json_too_deep`).

An object that repeats a key (`{"amount": 100, …, "amount": 1}`) means two things, and JSON
parsers silently keep the last; a reviewer, a log or a proxy may read the first. Such a body,
at any depth, is refused with a 400 problem document (`duplicate_key`) naming the key's path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.errors import FieldError, problem_response
from kassa.text import text_problem

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Every string of a body, with the colon that follows it when it is a key.
_STRING_OR_KEY = re.compile(rb'"(?:[^"\\]++|\\.)*+"(\s*:)?', re.DOTALL)


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


class _Repeats(dict[str, Any]):
    """An object of the body in which `key` appeared more than once."""

    key: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made = dict(pairs)
    if len(made) == len(pairs):
        return made
    repeats = _Repeats(made)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            repeats.key = key
            break
        seen.add(key)
    return repeats


def _path_to_repeat(value: Any) -> list[str] | None:
    if isinstance(value, _Repeats):
        return [value.key]
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for name, child in children:
        below = _path_to_repeat(child)
        if below is not None:
            return [str(name), *below]
    return None


def _keys_kept(value: Any) -> int:
    """How many keys the objects of a parsed body hold, at every depth."""
    if isinstance(value, dict):
        return len(value) + sum(_keys_kept(child) for child in value.values())
    if isinstance(value, list):
        return sum(_keys_kept(child) for child in value)
    return 0


def repeats_no_key(body: bytes) -> bool:
    """True when `body` is JSON in which no object repeats a key: as many keys as its text
    writes were kept by a (C) parser, which keeps one of each. False when some object may
    repeat one, or the parser refuses what the routes' parser may take (`NaN`, integers
    past 64 bits): `repeated_key` then reads the body slowly and says which."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    written = sum(1 for colon in _STRING_OR_KEY.findall(body) if colon)
    return written == _keys_kept(parsed)


def repeated_key(body: bytes) -> str | None:
    """The path (`details.cvc`, `metadata`) of the first key some object of `body` repeats;
    None when there is none or `body` is not JSON (the route's own parser says so). A part of
    the path that may not be shown (control characters, a card number) reads `*`."""
    if repeats_no_key(body):
        return None
    repeats = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats
        made = _object(pairs)
        repeats = repeats or isinstance(made, _Repeats)
        return made

    try:
        parsed = json.loads(body, object_pairs_hook=hook)
    except ValueError:  # not JSON, not UTF-8, an integer too long to read
        return None
    path = _path_to_repeat(parsed) if repeats else None
    if path is None:
        return None
    safe = ["*" if len(p) > 64 or text_problem(p, card_numbers=True) else p for p in path]
    return ".".join(safe)


class JsonDepthMiddleware:
    """Reads the body of requests under /api (already capped in size by the body limit outside
    this one), refuses it when it nests too deeply or repeats a key, and hands it on unchanged
    otherwise."""

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
        repeated = repeated_key(body) if body else None
        if repeated is not None:
            response = problem_response(
                status=400,
                code="duplicate_key",
                detail="The JSON body repeats a key; send each key of an object once.",
                title="Duplicate Key",
                errors=[FieldError(repeated, "repeated key")],
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
