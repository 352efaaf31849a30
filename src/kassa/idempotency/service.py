"""Idempotency-Key semantics of the contract, exactly once across crashes.

A key is scoped to the user and kept for 24 hours. The first request with a key claims it
(an INSERT the database arbitrates, so two racing requests cannot both run); the response
is stored when the request reached the business rules, and replayed to every later request
with the same method, path and JSON body. Only a keyed hash of the request is stored.

The claim alone is a lease, not a commitment: a request that dies before it changes
anything leaves a claim that a retry may take over once the lease lapses, and run again.
What makes the key exactly-once is the first durable effect: the service that makes it
(the payment insert of create, the move to `processing` of process, the refund's
reservation, the cancel) turns the claim into `effect_committed`, naming the effect and its
object, in the same database transaction as the effect (`commit_effect`). So the effect and
its record commit together or not at all, and from then on the key is never released nor
run again: a 5xx after the effect only ends the lease, and a retry after a crash, a 5xx or
a lapsed lease is answered from the object as it stands now (`ClaimKind.COMMITTED`; a
payment still `processing` is 202, a refund still `pending` is 201 `pending`, and
reconciliation finishes them); such an answer is kept once the object is settled.

Each claim and takeover carries a fresh token, and only the token's holder can commit the
effect or keep its response: a holder whose lease was taken over (stalled, not dead) finds
`commit_effect` refused, rolls its effect back, and answers 409 `idempotency_key_in_use`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import orjson
import structlog

from kassa.db import Database, Runner, new_id
from kassa.errors import KassaError
from kassa.idempotency import repository
from kassa.idempotency.models import IdempotencyRecord

log = structlog.get_logger("kassa.idempotency")
RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)  # longer than any request may run, processor timeout included


class NotJson(ValueError):
    """The body is not JSON; the request goes on without idempotency and fails validation."""


def canonical_request(method: str, path: str, body: bytes, *, livemode: bool = False) -> bytes:
    """Method, path and the JSON *value* of the body: key order and spacing do not matter.
    A live request's differs from the same test request's (a test-mode record never answers
    a live request, nor the reverse); a test request's is what it was before modes."""
    value = orjson.loads(body) if body.strip() else None
    parts = [
        method.upper().encode(),
        path.encode(),
        orjson.dumps(value, option=orjson.OPT_SORT_KEYS),
    ]
    return b"\n".join([b"live", *parts] if livemode else parts)


class ClaimKind(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    COMMITTED = "committed"  # an earlier attempt committed its effect: answer from it
    IN_USE = "in_use"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    record_id: uuid.UUID | None = None
    token: uuid.UUID | None = None
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    effect: str | None = None
    effect_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class HeldKey:
    """The claim a keyed request holds while it runs; its service hands it to
    `commit_effect` in the transaction of the request's first durable effect."""

    record_id: uuid.UUID
    token: uuid.UUID


@dataclass(frozen=True, slots=True)
class CommittedAnswer:
    """The answer to a retry, made from the committed effect's object as it stands; `final`
    once that object is settled (the answer is then kept and replayed from then on)."""

    status: int
    body: bytes
    final: bool


# Per effect name, the answer from its object: (user id, object id) → answer, or None
# when the object cannot be found.
AnswerFor = Callable[[uuid.UUID, uuid.UUID], Awaitable[CommittedAnswer | None]]


class KeyInUse(KassaError):
    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_in_use",
            409,
            "A request with this Idempotency-Key is still in progress; retry later.",
        )


async def commit_effect(
    db: Runner, held: HeldKey | None, effect: str, effect_id: uuid.UUID
) -> None:
    """Record, in the caller's transaction, that this request's effect is `effect` on
    object `effect_id`; call it in the transaction that makes the effect, before it. Raises
    `KeyInUse` (and so rolls the effect back) when the claim was taken over meanwhile. No
    key, nothing to record."""
    if held is None:
        return
    if not await repository.commit_effect(db, held.record_id, held.token, effect, effect_id):
        log.warning("idempotency_claim_lost", record_id=str(held.record_id))
        raise KeyInUse


class IdempotencyService:
    def __init__(
        self,
        db: Database,
        hmac_key: bytes,
        clock: Callable[[], datetime],
        lease: timedelta = LEASE,
    ) -> None:
        self._db = db
        self._lease = lease
        self._hmac_key = hmac_key
        self._clock = clock
        self._deferred: set[asyncio.Task[None]] = set()

    def fingerprint(self, method: str, path: str, body: bytes, *, livemode: bool = False) -> str:
        try:
            canonical = canonical_request(method, path, body, livemode=livemode)
        except orjson.JSONDecodeError as exc:
            raise NotJson from exc
        return hmac.new(self._hmac_key, canonical, hashlib.sha256).hexdigest()

    async def claim(self, user_id: uuid.UUID, key: str, fingerprint: str) -> Claim:
        now = self._clock()
        record = IdempotencyRecord(
            id=new_id(),
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            state="in_flight",
            token=new_id(),
            created_at=now,
            lease_until=now + self._lease,
            expires_at=now + RETENTION,
        )
        # The usual case, a new key, is one atomic statement; a key already there is
        # examined in a transaction.
        if await repository.insert_claim(self._db, record):
            return Claim(ClaimKind.NEW, record.id, record.token)
        for _ in range(3):
            async with self._db.transaction() as db:
                if await repository.insert_claim(db, record):
                    return Claim(ClaimKind.NEW, record.id, record.token)
                existing = await repository.get_record(db, user_id, key)
                if existing is None:
                    continue  # purged between the two statements; claim again
                if existing.expires_at <= now:
                    await repository.delete_record(db, existing.id)
                    continue
                if not hmac.compare_digest(existing.fingerprint, fingerprint):
                    return Claim(ClaimKind.REUSED)
                if existing.state == "completed":
                    return Claim(
                        ClaimKind.REPLAY,
                        existing.id,
                        status=existing.response_status,
                        body=existing.response_body,
                        content_type=existing.response_type,
                    )
                if existing.lease_until > now:
                    return Claim(ClaimKind.IN_USE)
                if existing.state == "effect_committed":
                    # Its request died or failed after the effect committed: never again.
                    return Claim(
                        ClaimKind.COMMITTED,
                        existing.id,
                        effect=existing.effect,
                        effect_id=existing.effect_id,
                    )
                token = new_id()
                if await repository.take_over(
                    db,
                    existing.id,
                    seen_lease=existing.lease_until,
                    lease_until=now + self._lease,
                    token=token,
                ):
                    log.warning("idempotency_lease_taken_over", record_id=str(existing.id))
                    return Claim(ClaimKind.NEW, existing.id, token)
                # Another request took it over or committed its effect meanwhile: look again.
        return Claim(ClaimKind.IN_USE)

    async def complete(
        self,
        record_id: uuid.UUID,
        token: uuid.UUID | None,
        status: int,
        body: bytes,
        content_type: str,
    ) -> None:
        """Keep the response of the claim `token` holds (None: an answer made from a committed
        effect). Never raises: a response that cannot be kept now is tried again in the
        background; failing that, the lease lapses and a retry answers from what committed."""
        await self._run_or_defer(
            "complete",
            record_id,
            lambda db: repository.complete(
                db, record_id, token=token, status=status, body=body, content_type=content_type
            ),
        )

    async def release(self, record_id: uuid.UUID, token: uuid.UUID) -> None:
        """Forget a claim whose request must be retryable (401, 429, validation, 5xx) — unless
        its effect committed: then only end its lease. Never raises: with the database out of
        reach the release is tried again in the background until the lease would lapse."""
        await self._run_or_defer(
            "release",
            record_id,
            lambda db: repository.release(db, record_id, token, self._clock()),
        )

    async def _run_or_defer(
        self, what: str, record_id: uuid.UUID, statement: Callable[[Runner], Awaitable[object]]
    ) -> None:
        try:
            await statement(self._db)
        except Exception as exc:
            log.warning(
                "idempotency_write_deferred",
                operation=what,
                record_id=str(record_id),
                error_type=type(exc).__name__,
            )
            task = asyncio.create_task(self._retry(what, record_id, statement))
            self._deferred.add(task)
            task.add_done_callback(self._deferred.discard)

    async def _retry(
        self, what: str, record_id: uuid.UUID, statement: Callable[[Runner], Awaitable[object]]
    ) -> None:
        deadline = time.monotonic() + self._lease.total_seconds()
        delay = 0.1
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                await statement(self._db)
            except Exception as exc:  # still out of reach: the lease bounds the trying
                log.info("idempotency_write_retry_failed", error_type=type(exc).__name__)
                continue
            log.info("idempotency_write_recovered", operation=what, record_id=str(record_id))
            return

    async def purge_expired(self) -> int:
        return await repository.delete_expired(self._db, self._clock())
