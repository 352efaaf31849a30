"""`Idempotency-Key` on every POST under /api/payments.

The middleware takes the caller's principal (keys are per user; authenticated once, by
`AuthenticationMiddleware`; a login token's session is checked before a key is claimed or
replayed — by the route itself where the claim rides on its effect), claims the key, runs
the request with the buffered body (the claim it holds in the request's state, for the service
that commits the effect), and stores or releases the response. Requests that fail before
the business rules (401, 429, malformed or invalid bodies, 5xx) are not kept, so the client
may retry them — unless their effect committed: then a retry is answered from that effect
(see `kassa.idempotency.service`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.auth.middleware import authenticated, confirmed
from kassa.errors import problem_response
from kassa.idempotency.service import (
    AnswerFor,
    Claim,
    ClaimKind,
    HeldKey,
    IdempotencyService,
    NotJson,
)
from kassa.observability.metrics import IDEMPOTENT_REPLAYS

log = structlog.get_logger("kassa.idempotency")
HEADER = b"idempotency-key"
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_NOT_KEPT_CODES = frozenset(
    {"validation_error", "malformed_json", "payload_too_large", "idempotency_key_in_use"}
)
STATE = "idempotency"  # where a keyed request's `HeldKey` waits for its service
# The routes whose services claim a new key with their first durable effect (`HeldKey.new`);
# any other keyed POST claims its key before it runs.
CLAIMED_WITH_EFFECT = re.compile(r"/api/payments(/process|/[^/]+/(refund|cancel))?")
_NOT_KEPT_STATUSES = frozenset({401, 403, 413, 429})


def should_keep(status: int, body: bytes) -> bool:
    if 200 <= status < 300:
        return True
    if not 400 <= status < 500 or status in _NOT_KEPT_STATUSES:
        return False
    try:
        code = orjson.loads(body).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return code not in _NOT_KEPT_CODES


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        service: IdempotencyService,
        answers: Mapping[str, AnswerFor],
    ) -> None:
        self.app = app
        self.service = service
        self.answers = answers  # per effect name, the answer from its committed object

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith("/api/payments")
        ):
            await self.app(scope, receive, send)
            return
        raw_key = _header(scope, HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not _VALID_KEY.fullmatch(key):
            await problem_response(
                status=422,
                code="invalid_idempotency_key",
                detail="Idempotency-Key must be 1 to 255 printable ASCII characters.",
            )(scope, receive, send)
            return
        principal = authenticated(scope)
        if principal is None:
            await self.app(scope, receive, send)  # the route answers 401; nothing kept
            return
        body, replay_receive = await _buffer(receive)
        if body is None:
            # The client went away before its body was whole. Running the request on what
            # arrived would read a missing body as an empty one (a refund with no amount
            # refunds everything); nothing was claimed, so nothing happens.
            log.info("request_abandoned", reason="client disconnected before the body ended")
            return
        try:
            fingerprint = self.service.fingerprint(
                scope["method"], scope["path"], body, livemode=principal.livemode
            )
        except NotJson:
            await self.app(scope, replay_receive, send)
            return
        if CLAIMED_WITH_EFFECT.fullmatch(scope["path"]):
            # The usual case, a key never seen, costs no round trip of its own: the
            # request's first durable effect claims the key in its own statement. Its answer
            # is held back until it is known that no other request holds the key.
            held = self.service.new_key(principal.user_id, key, fingerprint)
            scope.setdefault("state", {})[STATE] = held
            answer = await self._run_held(scope, replay_receive, held)
            if not held.conflict:
                for message in answer:
                    await send(message)
                return
            # Another request holds the key (nothing of this one was written, or kept):
            # answer as a retry of that one, through the claim as it stands.
            replay_receive = _replaying(body, receive)
        elif await confirmed(scope) is None:
            # The session has ended (or could not be checked): no claim, no replay; the
            # route answers the refusal.
            await self.app(scope, replay_receive, send)
            return
        claim = await self.service.claim(principal.user_id, key, fingerprint)
        if claim.kind is ClaimKind.REUSED:
            await problem_response(
                status=422,
                code="idempotency_key_reused",
                detail="This Idempotency-Key was used with a different request.",
            )(scope, receive, send)
            return
        if claim.kind is ClaimKind.COMMITTED and await self._answer_committed(
            principal.user_id, principal.livemode, claim, send
        ):
            return
        if claim.kind in {ClaimKind.IN_USE, ClaimKind.COMMITTED}:
            await problem_response(
                status=409,
                code="idempotency_key_in_use",
                detail="A request with this Idempotency-Key is still in progress; retry later.",
            )(scope, receive, send)
            return
        if claim.kind is ClaimKind.REPLAY:
            IDEMPOTENT_REPLAYS.inc()
            await _replay(claim.status or 500, claim.body or b"", claim.content_type, send)
            return
        assert claim.record_id is not None
        assert claim.token is not None
        scope.setdefault("state", {})[STATE] = HeldKey(claim.record_id, claim.token)
        await self._run_and_record(scope, replay_receive, send, claim.record_id, claim.token)

    async def _run_held(self, scope: Scope, receive: Receive, held: HeldKey) -> list[Message]:
        """Run the request that claims `held` with its effect; its response, held back, and
        kept (or what it claimed released) unless the key turned out claimed by another."""
        status = 500
        content_type = "application/json"
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"content-type":
                        content_type = value.decode("latin-1")
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            if not held.conflict:
                await self.service.release_held(held)
            raise
        if held.conflict:
            return []
        if not held.claimed and await confirmed(scope) is None:
            # Refused before its first read paid the session check, and the session has
            # ended: neither kept nor answered from the key (the answer becomes 401).
            return messages
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if should_keep(status, body):
            # Kept on this request's own claim, or on a new record — unless another request
            # holds the key: then this answer (a refusal made before any effect) is not its.
            held.conflict = not await self.service.keep(held, status, body, content_type)
        elif held.claimed:
            await self.service.release_held(held)
        elif status in _NOT_KEPT_STATUSES:
            # Refused for who sent it (an ended session, a missing scope) before anything
            # was claimed: answered as it is, never from what the key holds.
            pass
        else:
            # Refused before anything was claimed (a body that fails validation): a key
            # already used answers as it would have (reused, replayed, in use).
            held.conflict = await self.service.taken(held)
        return [] if held.conflict else messages

    async def _answer_committed(
        self, user_id: uuid.UUID, livemode: bool, claim: Claim, send: Send
    ) -> bool:
        """Answer a retry whose first attempt committed its effect with that effect's object
        as it stands, keeping the answer once the object is settled; False when there is
        no such object to answer with."""
        answer_for = self.answers.get(claim.effect or "")
        if answer_for is None or claim.effect_id is None or claim.record_id is None:
            log.error("idempotency_effect_unknown", effect=claim.effect)
            return False
        answer = await answer_for(user_id, livemode, claim.effect_id)
        if answer is None:
            return False
        if answer.final:
            await self.service.complete(
                claim.record_id, None, answer.status, answer.body, "application/json"
            )
        IDEMPOTENT_REPLAYS.inc()
        await _replay(answer.status, answer.body, "application/json", send)
        return True

    async def _run_and_record(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record_id: uuid.UUID,
        token: uuid.UUID,
    ) -> None:
        status = 500
        content_type = "application/json"
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await self.service.release(record_id, token)
            raise
        body = b"".join(chunks)
        if should_keep(status, body):
            await self.service.complete(record_id, token, status, body, content_type)
        else:
            await self.service.release(record_id, token)


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole body once and hand the app a receive that plays it back; None when
    the client disconnected first (the body is then unknown, never empty)."""
    parts: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        parts.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = b"".join(parts)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that plays `body` back once, then passes on to `receive`."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _replay(status: int, body: bytes, content_type: str | None, send: Send) -> None:
    headers: list[Any] = [
        (b"content-type", (content_type or "application/json").encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
