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
from typing import Any

import orjson
import structlog
from sqlalchemy import CTE, ColumnElement
from sqlalchemy.exc import IntegrityError

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
class NewKey:
    """A key no request holds yet: the request's first durable effect claims it, in the
    statement (or transaction) that makes the effect."""

    user_id: uuid.UUID
    key: str
    fingerprint: str
    created_at: datetime
    lease_until: datetime
    expires_at: datetime


@dataclass(slots=True)
class HeldKey:
    """The claim a keyed request holds (or, with `new`, will claim with its first durable
    effect) while it runs; its service hands it to `commit_effect` — or writes `claim_row`
    in its own statement — in the transaction of the request's first durable effect.

    The service notes what happened: `claimed` once the claim is written with the effect,
    `kept` once the response is stored too, `conflict` when another request holds the key
    (the claim's insert met it: nothing was written, and the request is answered as a
    retry)."""

    record_id: uuid.UUID
    token: uuid.UUID
    new: NewKey | None = None
    claimed: bool = False
    kept: bool = False
    conflict: bool = False

    @property
    def unclaimed(self) -> bool:
        return self.new is not None and not self.claimed

    def claim_row(
        self,
        effect: str,
        effect_id: uuid.UUID,
        answer: tuple[int, bytes] | None = None,
    ) -> dict[str, Any]:
        """The record of this key with its effect committed (and, with `answer`, its
        response kept): the columns of the row the effect's statement inserts."""
        new = self.new
        assert new is not None
        return {
            "id": self.record_id,
            "user_id": new.user_id,
            "key": new.key,
            "fingerprint": new.fingerprint,
            "state": "effect_committed" if answer is None else "completed",
            "token": self.token,
            "effect": effect,
            "effect_id": effect_id,
            "response_status": None if answer is None else answer[0],
            "response_body": None if answer is None else answer[1],
            "response_type": None if answer is None else "application/json",
            "created_at": new.created_at,
            "lease_until": new.lease_until,
            "expires_at": new.expires_at,
        }

    def answer_values(self, answer: tuple[int, bytes]) -> dict[str, Any]:
        """The parameters that keep `answer` as this claim's response (`complete_part`)."""
        return {
            "k_record": self.record_id,
            "k_held": self.token,
            "k_status": answer[0],
            "k_body": answer[1],
            "k_type": "application/json",
        }


@dataclass(frozen=True, slots=True)
class CommittedAnswer:
    """The answer to a retry, made from the committed effect's object as it stands; `final`
    once that object is settled (the answer is then kept and replayed from then on)."""

    status: int
    body: bytes
    final: bool


# Per effect name, the answer from its object: (user id, mode, object id) → answer, or None
# when the object cannot be found (in that mode).
AnswerFor = Callable[[uuid.UUID, bool, uuid.UUID], Awaitable[CommittedAnswer | None]]


class KeyInUse(KassaError):
    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_in_use",
            409,
            "A request with this Idempotency-Key is still in progress; retry later.",
        )


class KeyClaimedMeanwhile(KeyInUse):
    """The key was claimed by another request before this one's effect could claim it:
    nothing was written, and the middleware answers the request as a retry of that one."""


def claim_conflict(held: HeldKey | None, exc: IntegrityError) -> KeyClaimedMeanwhile | None:
    """When `exc` is the key's claim meeting another request's, the error to raise instead
    (the held key notes the conflict); None when it is another integrity error."""
    if held is None or not held.unclaimed or _RECORD_TABLE not in str(exc):
        return None
    held.conflict = True
    return KeyClaimedMeanwhile()


_RECORD_TABLE = "idempotency_record"


async def commit_effect(
    db: Runner,
    held: HeldKey | None,
    effect: str,
    effect_id: uuid.UUID,
    answer: tuple[int, bytes] | None = None,
) -> None:
    """Record, in the caller's transaction, that this request's effect is `effect` on
    object `effect_id` (with `answer`, its response too); call it in the transaction that
    makes the effect, before it. A key not claimed yet is claimed here. Raises `KeyInUse`
    (and so rolls the effect back) when the claim was taken over meanwhile, or
    `KeyClaimedMeanwhile` when another request claimed the key first. No key, nothing to
    record."""
    if held is None:
        return
    if held.unclaimed:
        try:
            await repository.insert_record(db, held.claim_row(effect, effect_id, answer))
        except IntegrityError as exc:
            raise claim_conflict(held, exc) or exc from None
        held.claimed = True
        held.kept = answer is not None
        return
    if not await repository.commit_effect(db, held.record_id, held.token, effect, effect_id):
        log.warning("idempotency_claim_lost", record_id=str(held.record_id))
        raise KeyInUse


async def keep_with_effect(db: Runner, held: HeldKey, answer: tuple[int, bytes]) -> None:
    """Keep the held claim's response in the transaction of the effect it answers with."""
    held.kept = await repository.complete(
        db,
        held.record_id,
        token=held.token,
        status=answer[0],
        body=answer[1],
        content_type="application/json",
    )


class IdempotencyService:
    # PostgreSQL: the claim and the kept response inside the effect's own statement.

    @staticmethod
    def claim_part(gate: CTE, when: ColumnElement[bool] | None = None) -> CTE:
        return repository.claim_part(gate, when)

    @staticmethod
    def complete_part(gate: CTE) -> CTE:
        return repository.complete_part(gate)

    @staticmethod
    def claim_values(row: dict[str, Any]) -> dict[str, Any]:
        """The parameters of `claim_part` for a `HeldKey.claim_row`."""
        return repository.claim_values(row)

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

    def new_key(self, user_id: uuid.UUID, key: str, fingerprint: str) -> HeldKey:
        """A key for the request to claim with its first durable effect (no round trip
        now: the usual case, a new key, costs nothing of its own)."""
        now = self._clock()
        return HeldKey(
            new_id(),
            new_id(),
            NewKey(user_id, key, fingerprint, now, now + self._lease, now + RETENTION),
        )

    async def keep(self, held: HeldKey, status: int, body: bytes, content_type: str) -> bool:
        """Keep the response of a request that held `held`, unless its effect's statement
        kept it already: on the claim it made, or — when it made none (it failed before any
        effect, or its effect rolled back) — on a new record. False when another request
        holds the key: nothing is kept, and this response is not the key's answer. Never
        raises: a response that cannot be kept now is tried again in the background."""
        if held.kept:
            return True
        if held.new is None:
            await self.complete(held.record_id, held.token, status, body, content_type)
            return True
        row = held.claim_row("", held.record_id, (status, body))
        row.update(effect=None, effect_id=None, response_type=content_type)
        try:
            return await repository.keep_response(self._db, row)
        except Exception:
            await self._run_or_defer(
                "complete", held.record_id, lambda db: repository.keep_response(db, row)
            )
            return True

    async def taken(self, held: HeldKey) -> bool:
        """Whether another request holds (or held) `held`'s key; False when it cannot be
        known now (the database out of reach: the refusal stands, nothing was written)."""
        new = held.new
        if new is None:
            return False
        try:
            return await repository.get_record(self._db, new.user_id, new.key) is not None
        except Exception:
            return False

    async def release_held(self, held: HeldKey) -> None:
        """Release what `held` claimed (see `release`); nothing when it claimed nothing."""
        if held.new is not None and not held.claimed:
            return
        await self.release(held.record_id, held.token)

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
