"""Idempotency-Key semantics of the contract.

A key is scoped to the user and kept for 24 hours. The first request with a key claims it
(an INSERT the database arbitrates, so two racing requests cannot both run); the response
is stored when the request reached the business rules, and replayed to every later request
with the same method, path and JSON body. Only a keyed hash of the request is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kassa.db import autocommit_engine, engine_of, new_id
from kassa.idempotency import repository
from kassa.idempotency.models import IdempotencyRecord

log = structlog.get_logger("kassa.idempotency")
RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)  # longer than any request may run, processor timeout included


class NotJson(ValueError):
    """The body is not JSON; the request goes on without idempotency and fails validation."""


def canonical_request(method: str, path: str, body: bytes) -> bytes:
    """Method, path and the JSON *value* of the body: key order and spacing do not matter."""
    value = orjson.loads(body) if body.strip() else None
    return b"\n".join(
        [method.upper().encode(), path.encode(), orjson.dumps(value, option=orjson.OPT_SORT_KEYS)]
    )


class ClaimKind(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    IN_USE = "in_use"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    record_id: uuid.UUID | None = None
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None


class IdempotencyService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hmac_key: bytes,
        clock: Callable[[], datetime],
        lease: timedelta = LEASE,
    ) -> None:
        self._sessions = sessions
        self._lease = lease
        # A claim, a completion and a release are one statement each: no session.
        self._single = autocommit_engine(engine_of(sessions))
        self._hmac_key = hmac_key
        self._clock = clock

    def fingerprint(self, method: str, path: str, body: bytes) -> str:
        try:
            canonical = canonical_request(method, path, body)
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
            created_at=now,
            lease_until=now + self._lease,
            expires_at=now + RETENTION,
        )
        # The usual case, a new key, is one atomic statement; a key already there is
        # examined in a transaction.
        async with self._single.begin() as db:
            if await repository.insert_claim(db, record):
                return Claim(ClaimKind.NEW, record.id)
        for _ in range(3):
            async with self._sessions.begin() as session:
                if await repository.insert_claim(session, record):
                    return Claim(ClaimKind.NEW, record.id)
                existing = await repository.get_record(session, user_id, key)
                if existing is None:
                    continue  # purged between the two statements; claim again
                if existing.expires_at <= now:
                    await repository.delete_record(session, existing.id)
                    continue
                if not hmac.compare_digest(existing.fingerprint, fingerprint):
                    return Claim(ClaimKind.REUSED)
                if existing.state == "completed":
                    return Claim(
                        ClaimKind.REPLAY,
                        existing.id,
                        existing.response_status,
                        existing.response_body,
                        existing.response_type,
                    )
                if existing.lease_until > now:
                    return Claim(ClaimKind.IN_USE)
                if await repository.take_over(
                    session,
                    existing.id,
                    seen_lease=existing.lease_until,
                    lease_until=now + self._lease,
                ):
                    log.warning("idempotency_lease_taken_over", record_id=str(existing.id))
                    return Claim(ClaimKind.NEW, existing.id)
                return Claim(ClaimKind.IN_USE)
        return Claim(ClaimKind.IN_USE)

    async def complete(
        self, record_id: uuid.UUID, status: int, body: bytes, content_type: str
    ) -> None:
        async with self._single.begin() as db:
            await repository.complete(
                db, record_id, status=status, body=body, content_type=content_type
            )

    async def release(self, record_id: uuid.UUID) -> None:
        """Forget a claim whose request must be retryable (401, 429, validation, 5xx)."""
        async with self._single.begin() as db:
            await repository.delete_record(db, record_id)

    async def purge_expired(self) -> int:
        async with self._sessions.begin() as session:
            return await repository.delete_expired(session, self._clock())
